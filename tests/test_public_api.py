"""The public names of the package are pinned (httpx style): changing them is a decision."""

import unbacked


def test_public_names():
    assert sorted(unbacked.__all__) == sorted(
        [
            "EVENT_SCHEMA",
            "EVENT_SCHEMA_VERSION",
            "Alert",
            "BaselineError",
            "DependencyError",
            "FormatError",
            "InputError",
            "ProgramBaseline",
            "RunReport",
            "ScanError",
            "SensorError",
            "UnbackedError",
            "UnknownFormatError",
            "__version__",
            "detect_events",
            "hunt",
            "read_events",
            "train",
        ]
    )
    for name in unbacked.__all__:
        assert getattr(unbacked, name) is not None


def test_errors_subclass_builtins():
    assert issubclass(unbacked.InputError, ValueError)
    assert issubclass(unbacked.SensorError, RuntimeError)
    assert issubclass(unbacked.FormatError, unbacked.UnbackedError)
