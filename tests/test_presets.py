"""Typed config: presets, strict --set overrides, round trips."""

from __future__ import annotations

import pytest

from sscl import presets
from sscl.errors import ConfigError


def test_every_preset_resolves_and_round_trips():
    names = presets.preset_names()
    assert {"demo", "paper_pretrain", "aimclr_stgcn"} <= set(names)
    for name, desc in names.items():
        assert desc, f"preset {name} has no description line"
        cfg = presets.resolve(name)
        assert presets.from_dict(presets.to_dict(cfg)) == cfg


def test_set_coerces_to_the_field_type():
    cfg = presets.resolve("demo", ["optim.lr=0.05", "data.loader.augment.out_len=80",
                                      "optim.milestones=[3, 5]", "model.last_channels=256",
                                      "run.threads=2", "optim.weight_decay=1e-5"])
    assert cfg.optim.weight_decay == 1e-5
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.data.loader.augment.out_len == 80
    assert cfg.optim.milestones == (3.0, 5.0)
    assert cfg.model.last_channels == 256
    assert cfg.run.threads == "2"
    assert presets.resolve("demo", ["model.last_channels=null"]).model.last_channels is None


@pytest.mark.parametrize("item, words", [
    ("optim.lrr=0.1", ["optim.lrr", "valid keys of optim", "lr", "momentum"]),
    ("nosuch.x=1", ["nosuch.x", "valid keys of the config", "run", "optim"]),
    ("data.loader.augment.outlen=3", ["valid keys of data.loader.augment", "out_len"]),
    ("optim.lr.x=1", ["optim.lr is a value"]),
    ("optim.lr", ["KEY=VALUE"]),
])
def test_unknown_keys_fail_and_list_valid_ones(item, words):
    with pytest.raises(ConfigError) as e:
        presets.resolve("demo", [item])
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("item", ["optim.lr=fast", "optim.accumulate=1.5", "run.deterministic=3",
                                  "optim.milestones=5", "run.stage=train"])
def test_bad_values_fail(item):
    with pytest.raises(ConfigError):
        presets.resolve("demo", [item])


def test_unknown_preset_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="presets: .*demo"):
        presets.resolve("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        presets.resolve(str(bad))
    code = tmp_path / "code.yaml"
    code.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError):  # configs are data: safe_load refuses object tags
        presets.resolve(str(code))


def test_a_yaml_file_is_a_config(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("run:\n  name: mine\noptim:\n  lr: 0.3\n")
    cfg = presets.resolve(str(p), ["optim.epochs=3"])
    assert (cfg.run.name, cfg.optim.lr, cfg.optim.epochs) == ("mine", 0.3, 3)
