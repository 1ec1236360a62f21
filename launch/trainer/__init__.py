"""The named pieces of the training loop; ``launch/train.py`` is the thin driver that wires them.

- :mod:`.device`     which device and precision a rank trains on, and loud errors when it cannot
- :mod:`.state`      the counters a run resumes from, and the epoch / accumulation schedule
- :mod:`.step`       one micro-batch forward/backward and one optimiser step
- :mod:`.window`     the logging window: loss terms summed on the device, reduced once per row
- :mod:`.policies`   when to validate, when to checkpoint, what a checkpoint holds
- :mod:`.preemption` SIGTERM / SIGUSR1 stop requests agreed across ranks
- :mod:`.elastic`    resuming a checkpoint on another number of processes (counters, LR schedule)

Each piece is small enough to read alone; together they are the loop docs/TRAINING.md describes.
"""
