"""SamplingOptions: one validated set of sampling options, with its defaults in one place."""

import math

import pytest

from crystaldos.options import DEFAULT_LATTICE_STEP, DEFAULT_STEP_LR, DEFAULT_TIE_TYPES, SamplingOptions


def test_defaults_changes_and_the_stored_settings():
    options = SamplingOptions()
    assert (options.guidance, options.strength, options.t_start, options.steps) == ("cfg", 1.0, 1000, None)
    assert (options.step_lr, options.lattice_step, options.tie_types) == (DEFAULT_STEP_LR, DEFAULT_LATTICE_STEP, DEFAULT_TIE_TYPES)
    changed = SamplingOptions.build(options, guidance="cbg", strength={"types": 1}, t_start=200)
    assert changed.strength == {"types": 1.0} and options.guidance == "cfg"  # a copy; the original is unchanged
    assert changed.resolved_lattice_step() == "ddim" and options.resolved_lattice_step() == "ddpm"
    assert SamplingOptions(**changed.to_dict()) == changed  # the stored settings give the options back
    caller = {"types": 2.0}
    held = SamplingOptions(strength=caller)
    caller["types"] = 5.0
    assert held.strength == {"types": 2.0}  # frozen: the caller's dict cannot change it afterwards


@pytest.mark.parametrize("changes, message", [
    ({"guidance": "classifier"}, "guidance must be one of"),
    ({"strength": math.nan}, "strength must be a finite number"),
    ({"strength": {"charge": 1.0}}, "unknown guidance variables"),
    ({"strength": "strong"}, "a number or a mapping"),
    ({"t_start": 2.5}, "t_start must be an integer"),
    ({"t_start": 1001}, "t_start must be an integer in 0 ... 1000"),
    ({"n_samples": 0}, "n_samples must be an integer >= 1"),
    ({"steps": 0}, "steps must be None"),
    ({"step_lr": -1e-5}, "step_lr must be a finite number >= 0"),
    ({"lattice_step": "euler"}, "lattice_step must be one of"),
    ({"spacing": "cosine"}, "spacing must be one of"),
    ({"unconditional": "none"}, "unconditional must be one of"),
])
def test_bad_options_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        SamplingOptions(**changes)


def test_an_unknown_option_name_lists_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown sampling options \['temperature'\]; the options are \['guidance'"):
        SamplingOptions.build(temperature=0.5)
