"""launch.config: presets, overrides and validation errors that tell the user what to fix."""

from pathlib import Path

import pytest
import yaml

from launch.config import PAPER_LR, ConfigError, apply_override, load_config, parse_value, validate

CONFIGS = Path(__file__).resolve().parents[1] / "launch" / "configs"


def write(tmp_path, name, cfg):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def minimal():
    return {"model": {"name": "aicanet"}, "data": {"k": 2}}


def test_defaults_follow_the_papers():
    cfg = validate(minimal())
    assert cfg["optim"]["lr"] == PAPER_LR  # AICANet Table I
    assert cfg["optim"]["betas"][0] == 0.9 and cfg["optim"]["weight_decay"] == 5e-4
    assert cfg["optim"]["milestones"] == [25, 40] and cfg["optim"]["gamma"] == 0.1
    assert cfg["train"]["epochs"] == 50
    # Cross-section wiring: the model's K and annealing horizon follow the loader and the run.
    assert cfg["model"]["num_candidates"] == 2 and cfg["model"]["total_epochs"] == 50
    assert cfg["data"]["seed"] == cfg["train"]["seed"]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epoch=3", "unknown key train.epoch; allowed keys: epochs"),
        ("optim.lr.decoder=0.1", "unknown key optim.lr.decoder; allowed keys: face_encoder"),
        ("train.mixed_precision=fp16", "allowed values: auto, no, bf16"),
        ("train.epochs=abc", "train.epochs='abc' has type str; expected number"),
        ("train.grad_accum_steps=0", "train.grad_accum_steps=0 must be > 0"),
        ("optim.betas=[0.9]", "optim.betas=[0.9] must be two numbers"),
        ("optim.milestones=[40,25]", "increasing list"),
        ("train.cpu=1", "train.cpu=1 has type int; expected bool"),
        ("optim.lr=0.1", "optim.lr must be a mapping"),
        ("optim.weight_decay=null", "optim.weight_decay may not be null"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, override, fragment):
    path = write(tmp_path, "c.yaml", minimal())
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert fragment in str(err.value)


def test_override_syntax_errors(tmp_path):
    path = write(tmp_path, "c.yaml", minimal())
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["train.epochs"])
    with pytest.raises(ConfigError, match="section one of data, model, optim, train$"):
        load_config(path, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="section one of data, model, optim, train$"):
        load_config(path, ["eval.foo=1"])  # evaluation is configured on launch.evaluate's command line
    with pytest.raises(ConfigError, match="unknown section 'trainer'"):
        validate({**minimal(), "trainer": {}})


def test_k_mismatch_and_missing_model_name():
    with pytest.raises(ConfigError, match="model.num_candidates=10 but data.k=2"):
        validate({"model": {"name": "bianet", "num_candidates": 10}, "data": {"k": 2}})
    with pytest.raises(ConfigError, match="model.name is required; allowed values: baseline, aicanet, bianet"):
        validate({"data": {"k": 2}})


def test_overrides_parse_as_yaml_at_any_depth(tmp_path):
    path = write(tmp_path, "c.yaml", minimal())
    cfg = load_config(
        path,
        [
            "optim.lr.generator=1e-3",
            "optim.milestones=[2, 4]",
            "train.max_steps=7",
            "train.resume=null",
            "data.direction=f2v",
            "model.dropout=0.5",
            "train.val_data=/x/val",
        ],
    )
    assert cfg["optim"]["lr"]["generator"] == 1e-3 and cfg["optim"]["lr"]["classifier"] == 5e-2
    assert cfg["optim"]["milestones"] == [2, 4] and cfg["train"]["max_steps"] == 7
    assert cfg["data"]["direction"] == "f2v" and cfg["model"]["dropout"] == 0.5
    assert parse_value("5e-4") == 5e-4 and parse_value("auto") == "auto" and parse_value("3") == 3
    # YAML 1.1 reads "1e-3" as a string; learning rates are commonly written that way.
    assert parse_value("{generator: 1e-3, classifier: 2E-2}") == {"generator": 1e-3, "classifier": 2e-2}
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_override({"train": {"epochs": 3}}, "train.epochs.x=1")


def test_base_inheritance_and_errors(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {name: aicanet}\ndata: {k: 2}\ntrain: {epochs: 7, seed: 3}\noptim: {lr: {generator: 1e-3}}\n"
    )
    child = write(tmp_path, "child.yaml", {"base": "base.yaml", "train": {"epochs": 9}})
    cfg = load_config(child)
    assert cfg["train"]["epochs"] == 9 and cfg["train"]["seed"] == 3
    assert cfg["optim"]["lr"]["generator"] == 1e-3
    write(tmp_path, "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


PRESETS = sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("_"))


def test_every_paper_variant_has_a_preset():
    for model in ("baseline", "aicanet", "bianet"):
        for direction in ("v2f", "f2v", "both"):
            assert f"{model}_{direction}.yaml" in PRESETS
        for direction in ("v2f", "f2v"):  # the papers' multi-way and verification heads
            assert {f"{model}_{direction}_k10.yaml", f"{model}_{direction}_k1.yaml"} <= set(PRESETS)
    assert "demo.yaml" in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate_and_match_their_name(name):
    cfg = load_config(CONFIGS / name)
    if name != "demo.yaml":
        model, direction, *k = name[:-5].split("_")
        assert cfg["model"]["name"] == model and cfg["data"]["direction"] == direction
        assert cfg["data"]["k"] == (int(k[0][1:]) if k else 2)
        assert cfg["train"]["output_dir"] == f"runs/{name[:-5]}"
        assert cfg["model"]["face_pretrained"] == "imagenet"  # the papers start from ImageNet
        assert cfg["model"].get("alpha", 2.0) == (3.0 if (model, direction) == ("aicanet", "f2v") else 2.0)
        assert cfg["optim"]["lr"] == PAPER_LR and cfg["data"]["batch_size"] == 50
        assert cfg["optim"]["lr_scale"] == 0.02  # what trained (bench_paper_presets); Table I = 1
        assert cfg["train"]["val_data"] and "val" in str(cfg["train"]["val_data"])
        assert "test" not in str(cfg["train"]["val_data"])  # model selection never on test


@pytest.mark.parametrize("name", PRESETS)
def test_presets_pass_the_loader_and_model_validators(name):
    from launch.config import check_owned_sections

    cfg = load_config(CONFIGS / name)
    full_model = check_owned_sections(cfg)
    assert full_model["num_candidates"] == cfg["data"]["k"]
    assert full_model["total_epochs"] == cfg["train"]["epochs"]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.directon=v2f", "unknown data config key(s) ['directon']"),
        ("data.direction=x2y", "data.direction must be one of ['v2f', 'f2v', 'both']"),
        ("model.name=resnet", "model.name='resnet' is unknown"),
        ("model.tau=-1", "model.tau=-1 must be a positive number"),
    ],
)
def test_owned_sections_errors_name_the_key(override, fragment):
    from launch.config import check_owned_sections

    with pytest.raises(ConfigError) as err:
        check_owned_sections(load_config(CONFIGS / "aicanet_v2f.yaml", [override]))
    assert fragment in str(err.value)


def test_yaml_1_1_words_stay_strings_so_mixed_precision_no_works():
    """`train.mixed_precision=no` is what users type; YAML 1.1 would turn it into False."""
    assert parse_value("no") == "no" and parse_value("off") == "off"
    assert parse_value("true") is True and parse_value("False") is False
    demo = Path(__file__).resolve().parents[1] / "launch" / "configs" / "demo.yaml"
    cfg = load_config(demo, ["train.mixed_precision=no"])
    assert cfg["train"]["mixed_precision"] == "no"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(demo, ["train.mixed_precision=off"])


def test_a_preset_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name, by_path = load_config("demo"), load_config("launch/configs/demo.yaml")
    assert by_name == by_path and by_name["model"]["name"]
    with pytest.raises(ConfigError, match="shipped presets: .*aicanet_v2f"):
        load_config("no_such_preset")


def test_trackers_are_checked_by_name(tmp_path):
    path = write(tmp_path, "c.yaml", minimal())
    assert load_config(path)["train"]["log_with"] == ["tensorboard"]
    assert load_config(path, ["train.log_with=[]"])["train"]["log_with"] == []
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'"):
        load_config(path, ["train.log_with=[tensorbord]"])
