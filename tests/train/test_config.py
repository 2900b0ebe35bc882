"""Typed config: presets, strict --set overrides, round trips."""

from __future__ import annotations

import pytest

from sscl import config as config_mod
from sscl.errors import ConfigError


def test_every_preset_resolves_and_round_trips():
    names = config_mod.presets()
    assert {"demo", "paper_pretrain", "aimclr_stgcn"} <= set(names)
    for name, desc in names.items():
        assert desc, f"preset {name} has no description line"
        cfg = config_mod.resolve(name)
        assert config_mod.from_dict(config_mod.to_dict(cfg)) == cfg


def test_set_coerces_to_the_field_type():
    cfg = config_mod.resolve("demo", ["optim.lr=0.05", "data.loader.augment.out_len=80",
                                      "optim.milestones=[3, 5]", "model.last_channels=256",
                                      "run.threads=2", "optim.weight_decay=1e-5"])
    assert cfg.optim.weight_decay == 1e-5
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.data.loader.augment.out_len == 80
    assert cfg.optim.milestones == (3.0, 5.0)
    assert cfg.model.last_channels == 256
    assert cfg.run.threads == "2"
    assert config_mod.resolve("demo", ["model.last_channels=null"]).model.last_channels is None


@pytest.mark.parametrize("item, words", [
    ("optim.lrr=0.1", ["optim.lrr", "valid keys of optim", "lr", "momentum"]),
    ("nosuch.x=1", ["nosuch.x", "valid keys of the config", "run", "optim"]),
    ("data.loader.augment.outlen=3", ["valid keys of data.loader.augment", "out_len"]),
    ("optim.lr.x=1", ["optim.lr is a value"]),
    ("optim.lr", ["KEY=VALUE"]),
])
def test_unknown_keys_fail_and_list_valid_ones(item, words):
    with pytest.raises(ConfigError) as e:
        config_mod.resolve("demo", [item])
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("item", ["optim.lr=fast", "optim.accumulate=1.5", "run.deterministic=3",
                                  "optim.milestones=5", "run.stage=train"])
def test_bad_values_fail(item):
    with pytest.raises(ConfigError):
        config_mod.resolve("demo", [item])


def test_unknown_preset_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="presets: .*demo"):
        config_mod.resolve("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_mod.resolve(str(bad))
    code = tmp_path / "code.yaml"
    code.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError):  # configs are data: safe_load refuses object tags
        config_mod.resolve(str(code))


def test_a_yaml_file_is_a_config(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("run:\n  name: mine\noptim:\n  lr: 0.3\n")
    cfg = config_mod.resolve(str(p), ["optim.epochs=3"])
    assert (cfg.run.name, cfg.optim.lr, cfg.optim.epochs) == ("mine", 0.3, 3)


def test_learning_rate_schedules():
    from sscl.config import OptimConfig
    from sscl.engine import lr_at

    warm = OptimConfig(lr=0.1, warmup_epochs=1, schedule="step", milestones=(2.0, 3.0), gamma=0.1)
    # 10 steps an epoch: linear warm-up over the first 10 steps, then x0.1 at epochs 2 and 3.
    assert [round(lr_at(warm, s, 10, 50), 6) for s in (0, 4, 9, 10, 19, 20, 29, 30, 49)] == [
        0.01, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    cos = OptimConfig(lr=0.2, schedule="cosine")
    assert lr_at(cos, 0, 10, 100) == 0.2
    assert abs(lr_at(cos, 50, 10, 100) - 0.1) < 1e-12
    assert lr_at(cos, 100, 10, 100) == 0.0
    assert lr_at(OptimConfig(lr=0.3, schedule="constant"), 77, 10, 100) == 0.3
