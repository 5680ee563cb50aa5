"""lab.config: fields declared once; the messages, the type checks and the unknown-key refusal follow."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from lab.config import Config, check, config_from_dict, describe_field, param
from lab.errors import LabError


def _net(spec, name):
    if "type" not in spec:
        raise LabError(f"missing {name}.type; allowed: mlp")
    return {**spec, "checked": True}


@dataclass
class Base(Config):
    steps: int = param(10, ge=1)
    lr: float = param(1e-3, gt=0)
    frac: float = param(0.5, ge=0, lt=1, note="0 = off")
    mode: str = param("a", choices=("a", "b"))
    flag: bool = False
    sizes: tuple[int, ...] = param((1, 2), ge=1, min_len=1)
    names: list[str] | None = None
    net: dict = param({"type": "mlp"}, spec=_net)
    t_min: float = param(0.1, gt=0, lt=1)
    t_max: float = param(0.9, gt=0, lt=1)

    def validate(self):
        super().validate()
        check(self.t_min < self.t_max, "t_min/t_max", (self.t_min, self.t_max), "t_min < t_max")


@dataclass
class Child(Base):
    lr: float = 5e-4  # a new default keeps the base's declared range


@pytest.mark.parametrize("field,value,allowed", [
    ("steps", 0, "an integer >= 1"),
    ("steps", True, "an integer >= 1"),
    ("steps", 2.0, "an integer >= 1"),
    ("lr", 0.0, "a positive float"),
    ("lr", "fast", "a positive float"),
    ("lr", float("nan"), "a positive float"),
    ("frac", 1.0, "a float in [0, 1) (0 = off)"),
    ("mode", "c", "a, b"),
    ("flag", 1, "true or false"),
    ("sizes", [], "a non-empty list of integers each >= 1"),
    ("sizes", [1, 0], "a non-empty list of integers each >= 1"),
    ("names", ["a", 3], "a list of strings or null"),
    ("net", [1], "a JSON object"),
])
def test_a_bad_value_is_one_line_naming_the_field_and_what_is_allowed(field, value, allowed):
    for build in (lambda: Base(**{field: value}), lambda: config_from_dict(Base, {field: value})):
        with pytest.raises(LabError) as ei:
            build()
        msg = str(ei.value)
        assert msg.startswith(f"invalid {field}=") and msg.endswith(f"allowed: {allowed}") and "\n" not in msg, msg


def test_good_values_are_normalised():
    c = config_from_dict(Base, {"lr": 1, "sizes": [3, 4], "names": None})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.sizes == (3, 4) and isinstance(c.sizes, tuple)
    assert c.net == {"type": "mlp", "checked": True}  # the nested validator ran
    assert Base().net is not Base().net  # a mutable default is copied per instance


def test_nested_validator_and_cross_field_rule():
    with pytest.raises(LabError, match=r"missing net.type; allowed: mlp"):
        Base(net={})
    with pytest.raises(LabError, match=r"invalid t_min/t_max=\(0.8, 0.2\); allowed: t_min < t_max"):
        Base(t_min=0.8, t_max=0.2)


def test_unknown_keys_are_refused_with_the_allowed_names():
    with pytest.raises(LabError) as ei:
        config_from_dict(Base, {"stepz": 3})
    assert "stepz" in str(ei.value) and "steps" in str(ei.value)
    with pytest.raises(LabError, match="a JSON object of its fields"):
        config_from_dict(Base, [1, 2])


def test_a_subclass_that_changes_a_default_keeps_the_range():
    assert Child().lr == 5e-4
    with pytest.raises(LabError, match="allowed: a positive float"):
        Child(lr=-1.0)
    assert describe_field(Child, "lr") == "a positive float"


def test_plain_dataclasses_get_their_kinds_checked_by_config_from_dict():
    @dataclass
    class Plain:
        n: int = 1

    assert config_from_dict(Plain, {"n": 3}).n == 3
    with pytest.raises(LabError, match="allowed: an integer"):
        config_from_dict(Plain, {"n": "3"})
    assert [f.name for f in dataclasses.fields(Plain)] == ["n"]


def test_a_union_without_none_refuses_none_and_runs_its_validator():
    def ks(v, name):
        if isinstance(v, int) and v < 1:
            raise LabError(f"invalid {name}={v!r}; allowed: K >= 1 or a list of them")
        return v

    @dataclass
    class U(Config):
        segments: tuple | int = param(2, spec=ks)

    with pytest.raises(LabError, match="invalid segments=None"):
        U(segments=None)
    with pytest.raises(LabError, match="K >= 1"):
        U(segments=0)
    assert U(segments=(1, 2)).segments == (1, 2)
