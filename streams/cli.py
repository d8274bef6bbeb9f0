"""The ``valuestream`` command: worker, topics, publish, fit, demo, watch, forward, export.

Errors a user can fix (a bad flag, a bad environment variable, an unreachable broker) end
in one line on stderr naming the problem, and exit status 2.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from streams import __version__
from streams.clients import KafkaUnavailable
from streams.settings import ConfigError, Settings
from streams.topics import (
    CHURN_RISK,
    CUSTOMER_VALUE,
    DEAD_LETTERS,
    FOLLOW_UPS,
    INPUT_TOPICS,
    MODEL_PARAMS,
    TopicError,
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        self.exit(EXIT_USAGE, f"valuestream: {message}\n")


def _port(text: str) -> str:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (expected 1..65535)")
    return text


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _timestamp(text: str) -> datetime:
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Timestamp

    try:
        return TypeAdapter(Timestamp).validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 timestamp with an offset, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="valuestream", description="Real-time customer value profiles.")
    parser.add_argument("--version", action="version", version=f"valuestream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    worker = commands.add_parser("worker", help="run a stream-processing worker")
    worker.add_argument("--web-port", type=_port, help="HTTP port (VALUESTREAM_WEB_PORT)")
    worker.add_argument("--data-dir", help="state directory (VALUESTREAM_DATA_DIR)")

    commands.add_parser("topics", help="create the topics valuestream uses, if missing")

    publish = commands.add_parser("publish", help="send a file of events to their topics")
    publish.add_argument("file", type=Path,
                         help="JSONL (one event per line) or CSV ('-' for stdin)")
    publish.add_argument("--format", choices=["jsonl", "csv"],
                         help="the file's format (default: csv for a .csv file, else jsonl)")
    publish.add_argument("--sort", action="store_true",
                         help="send the events in occurred_at order across all topics")
    publish.add_argument("--validate", action="store_true",
                         help="check every line as the worker would; send nothing")

    fit = commands.add_parser("fit", help="fit the models on all customers and publish them")
    fit.add_argument("--as-of", type=_timestamp, help="measure ages at this RFC 3339 time")
    fit.add_argument("--input", type=Path, help="a JSONL file of profiles instead of the topic")
    fit.add_argument("--json", action="store_true", help="print the parameters as JSON")
    fit.add_argument("--dry-run", action="store_true", help="fit and show, do not publish")
    fit.add_argument("--reset", action="store_true",
                     help="publish the documented default parameters again")

    watch = commands.add_parser("watch", help="print a topic's records as they arrive")
    watch.add_argument("topic", choices=[CUSTOMER_VALUE, CHURN_RISK, FOLLOW_UPS, DEAD_LETTERS,
                                         MODEL_PARAMS, *INPUT_TOPICS])
    watch.add_argument("--from-beginning", action="store_true")

    forward = commands.add_parser(
        "forward", help="post each event of an output topic to a webhook (README, *Webhooks*)")
    forward.add_argument("topic", choices=[CHURN_RISK, FOLLOW_UPS])
    forward.add_argument("--url", required=True, help="the webhook: an http(s):// address")
    forward.add_argument("--secret-file", type=Path,
                         help="a file holding the HMAC-SHA256 signing secret")
    forward.add_argument("--group", help="the consumer group (default: <app id>-forward-TOPIC; "
                         "give each destination of one topic its own)")
    forward.add_argument("--from-beginning", action="store_true",
                         help="a new group starts at the topic's oldest event, not its next")
    forward.add_argument("--attempts", type=_positive_int, default=8,
                         help="posts of one event before it is a dead letter (default 8)")
    forward.add_argument("--timeout", type=_positive_float, default=10.0,
                         help="seconds to wait for one answer (default 10)")
    forward.add_argument("--backoff", type=_non_negative_float, default=1.0,
                         help="seconds before the second attempt, doubled for each next one "
                              "(default 1, at most 30)")
    forward.add_argument("--metrics-port", type=_port, default="9108",
                         help="the port of the forwarder's /metrics (default 9108)")

    export = commands.add_parser(
        "export", help="the customers a filter names, as CSV or JSON lines (README, "
        "*Segment exports*)")
    export.add_argument("--where", help="e.g. \"tier in (gold, platinum) and churn = high\"")
    export.add_argument("--fields", help="comma-separated profile fields (dotted into "
                        "churn_risk and rfm); default: a mailing set (CSV), everything (JSONL)")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("-o", "--output", type=Path, help="the file to write (default: stdout)")

    demo = commands.add_parser("demo", help="send plausible shop traffic")
    demo.add_argument("--customers", type=_positive_int, default=200)
    demo.add_argument("--events", type=_positive_int, default=5_000,
                      help="how many events to send in all")
    demo.add_argument("--rate", type=_non_negative_float, default=200.0,
                      help="events per second (0: as fast as possible)")
    demo.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, TopicError, KafkaUnavailable) as exc:
        print(f"valuestream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "worker":
        if args.web_port:
            os.environ["VALUESTREAM_WEB_PORT"] = args.web_port
        if args.data_dir:
            os.environ["VALUESTREAM_DATA_DIR"] = args.data_dir
        return _worker(Settings.from_env())
    settings = Settings.from_env()
    if args.command == "topics":
        from streams.topics import ensure_topics

        report = ensure_topics(settings)
        print(f"created {len(report.created)} topic(s)"
              + "".join(f"\n  {t}" for t in report.created))
        print(f"updated the settings of {len(report.updated)} topic(s)" + "".join(
            f"\n  {t}: " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
            for t, changed in report.updated.items()))
        return 0
    if args.command == "publish":
        from streams.publish import publish_file

        return publish_file(settings, args.file, args.format, args.sort, args.validate)
    if args.command == "fit":
        from streams.fit import run_fit

        return run_fit(settings, args.as_of, args.input, args.json, args.dry_run, args.reset)
    if args.command == "watch":
        from streams.watch import watch

        return watch(settings, args.topic, args.from_beginning)
    if args.command == "export":
        from streams.export import run_export

        return run_export(settings, args.where, args.fields, args.format, args.output)
    if args.command == "forward":
        from streams.forward import run_forward

        return run_forward(settings, args.topic, args.url, args.secret_file, args.group,
                           args.from_beginning, args.attempts, args.timeout, args.backoff,
                           int(args.metrics_port))
    from streams.demo import run_demo

    return run_demo(settings, customers=args.customers, events=args.events, rate=args.rate,
                    seed=args.seed)


def _worker(settings: Settings) -> int:
    from streams.topics import ensure_topics

    ensure_topics(settings)
    from faust.worker import Worker

    from streams.logs import limit_repeats, use_json_lines

    class _Worker(Worker):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            limit_repeats(logger)  # an unreachable broker is one line per 10 s, not 1,500
            if settings.log_format == "json":
                use_json_lines(logger)

    from streams.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app, _ = create_app(settings)
    # The agent collects garbage itself, between batches (see CustomerAgent.collect_garbage);
    # objects of the start-up are frozen out of collection altogether.
    gc.freeze()
    gc.disable()
    worker = _Worker(app, loglevel=settings.log_level, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG and keeps it there: every
    # debug call of Faust and aiokafka then builds a record (7% of a busy worker's time).
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
