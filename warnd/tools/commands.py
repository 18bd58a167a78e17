"""The tools' commands, found by the CLI through the ``warnd.commands`` entry points."""

from __future__ import annotations

from warnd.tools import (
    bench_broadcast,  # noqa: F401 - registers ``bench broadcast``
    bench_console,  # noqa: F401 - registers ``bench console``
)
from warnd.tools.bench_callouts import acks_command, escalation_command
from warnd.tools.bench_eew import eew_command
from warnd.tools.bench_fanout import bench
from warnd.tools.bench_faults import faults_command
from warnd.tools.bench_sms import sms
from warnd.tools.bench_voice import voice_command
from warnd.tools.demo import demo
from warnd.tools.speakers import speakers

for command in (
    acks_command,
    eew_command,
    escalation_command,
    faults_command,
    sms,
    voice_command,
):
    bench.add_command(command)

__all__ = ["bench", "demo", "speakers"]
