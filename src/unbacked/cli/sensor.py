"""``unbacked sensor``: the system-wide live sensor, with streaming detection.

    unbacked sensor -o events.parquet                record everything (until Ctrl-C / --duration)
    unbacked sensor --alerts alerts.jsonl --baseline DIR    detect as it happens
    unbacked sensor --build                          only build (and cache) the eBPF object

Every act that procures executable memory (mmap/mprotect/pkey_mprotect with PROT_EXEC),
memfd_create, exec, connect and process lifecycle, system-wide. Needs root, a kernel with BTF
and syscall tracepoints; tracefs and bpffs are mounted when missing. Alerts are OCSF Detection
Findings, written within a second of the event. Exit codes as for ``hunt``: 3 when an alert
reached --fail-on.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from unbacked.model.alert import Alert
from unbacked.sensor.live import DEFAULT_RING_MB, SensorOptions


@click.command()
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    help="Write events to this .parquet or .jsonl file (EVENT_SCHEMA).",
)
@click.option(
    "--alerts",
    "alerts_path",
    type=click.Path(dir_okay=False),
    help="Append alerts (OCSF JSON lines) to this file as they happen; '-' for stdout.",
)
@click.option(
    "--baseline",
    "baseline_dir",
    type=click.Path(file_okay=False, exists=True),
    help="Baseline directory from `unbacked train` (default: self-baselined window).",
)
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
@click.option(
    "--ring-mb",
    default=DEFAULT_RING_MB,
    show_default=True,
    help="Kernel ring buffer size in MiB (power of two).",
)
@click.option(
    "--rate-limit",
    "rate_burst",
    default=20_000,
    show_default=True,
    help="Records per (process, caller, syscall) per second before the excess is "
    "only counted; 0 turns the limit off.",
)
@click.option(
    "--fail-on",
    default="high",
    show_default=True,
    help="Exit 3 when an alert is at/above this severity ('none' never).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Write the run summary (events, sensor counters, alert latency) as JSON.",
)
@click.option(
    "--build",
    "build_only",
    is_flag=True,
    help="Build and cache the eBPF object, print its path, and exit.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Scan each alert's regions in the still-running process and attach the result.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def command(
    output: str | None,
    alerts_path: str | None,
    baseline_dir: str | None,
    duration: float | None,
    ring_mb: int,
    rate_burst: int,
    fail_on: str,
    report_path: str | None,
    build_only: bool,
    verify: bool,
    quiet: bool,
) -> None:
    """Run the live eBPF sensor system-wide."""
    if build_only:
        from unbacked.sensor.build import build_object

        click.echo(str(build_object(force=True)))
        return
    from unbacked.cli._common import exit_code, parse_fail_on
    from unbacked.sensor.record import record_system
    from unbacked.sensor.stream import StreamingDetector, ocsf_appender

    if output is None and alerts_path is None:
        raise click.UsageError("nothing to do: give -o FILE and/or --alerts FILE")
    threshold = parse_fail_on(fail_on)
    detector = None
    reported: list[Alert] = []
    if alerts_path is not None:
        baseline = None
        if baseline_dir is not None:
            from unbacked.detect.baseline import ProgramBaseline

            baseline = ProgramBaseline.load(baseline_dir)
        if alerts_path == "-":
            sink = ocsf_appender(None, sys.stdout)
        else:
            Path(alerts_path).parent.mkdir(parents=True, exist_ok=True)
            Path(alerts_path).write_text("")
            sink = ocsf_appender(alerts_path)

        def on_alerts(alerts: list[Alert]) -> None:
            reported.extend(alerts)
            sink(alerts)

        detector = StreamingDetector(on_alerts, baseline=baseline, verify=verify)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)

    stopping = {"now": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    opts = SensorOptions(ring_mb=ring_mb, rate_burst=rate_burst)
    if not quiet:
        click.echo("unbacked sensor: running (Ctrl-C to stop)", err=True)
    result = record_system(
        output,
        options=opts,
        on_batch=detector,
        duration=duration,
        should_stop=lambda: stopping["now"],
    )
    if detector is not None:
        detector.flush()
    summary = result.summary()
    if detector is not None:
        lat = sorted(detector.latencies_s)
        summary["alerts"] = detector.alerts
        summary["alert_latency_s"] = {
            "n": len(lat),
            "p50": lat[len(lat) // 2] if lat else None,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            "max": lat[-1] if lat else None,
        }
        passes = sorted(detector.pass_s)
        summary["detection_pass_s"] = {
            "n": len(passes),
            "p50": passes[len(passes) // 2] if passes else None,
            "max": passes[-1] if passes else None,
        }
    if report_path:
        Path(report_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not quiet:
        s = result.stats
        click.echo(
            f"unbacked sensor: {result.events} events in {result.seconds:.1f}s "
            f"(lost {s.get('lost', 0)}, rate-limited {s.get('suppressed', 0)})"
            + (f", {len(reported)} alerts" if detector is not None else ""),
            err=True,
        )
    sys.exit(exit_code(reported, threshold))
