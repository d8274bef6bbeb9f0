#!/usr/bin/env bash
# `make run`: a local broker (unless KAFKA_BOOTSTRAP_SERVERS names one), the topics, a worker,
# a burst of demo traffic, then a steady trickle of it until Ctrl-C. Prints where to look.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=.venv/bin
mkdir -p .local/run

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  KAFKA_BOOTSTRAP_SERVERS=$(deploy/kafka/kafka.sh up)
fi
export KAFKA_BOOTSTRAP_SERVERS
# The demo's orders are in USD and EUR: without a rate, the EUR ones would be dead letters.
export VALUESTREAM_FX_RATES=${VALUESTREAM_FX_RATES:-deploy/demo/fx-rates.json}
port=${VALUESTREAM_WEB_PORT:-6066}
host=${VALUESTREAM_WEB_HOST:-127.0.0.1}
url="http://$host:$port"

"$bin/valuestream" topics
"$bin/valuestream" worker > .local/run/worker.log 2>&1 &
worker=$!
demo=
# Bash runs a trap only once its foreground command has finished: the long-running demo
# below runs in the background, so that Ctrl-C stops everything at once.
trap 'kill $demo "$worker" 2>/dev/null; wait $demo "$worker" 2>/dev/null; echo "worker stopped (the broker keeps running: make kafka-down)"' EXIT
trap 'exit 130' INT TERM

"$bin/python" - "$url/health" "$worker" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the worker exited during start-up: see .local/run/worker.log")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit("the worker did not become healthy within 120 s: see .local/run/worker.log")
PY

"$bin/valuestream" demo --customers 200 --events 3000 --rate 0

cat <<TXT

valuestream is running.
  the shop's overview $url/ui
  a customer's page   $url/ui/customers/demo-00001
  a customer profile  $url/customers/demo-00001
  at a given moment   $url/customers/demo-00001?as_of=2030-01-01T00:00:00Z
  health              $url/health
  metrics             $url/metrics
  worker log          .local/run/worker.log
  broker              $KAFKA_BOOTSTRAP_SERVERS
watch the output topics in another terminal:
  .venv/bin/valuestream watch customer-value
  .venv/bin/valuestream watch dead-letters --from-beginning
your own events (one JSON event per line, see README "Input events"):
  KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS .venv/bin/valuestream publish events.jsonl
fit the models to the profiles so far (README "Models"; --dry-run only shows them):
  KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS .venv/bin/valuestream fit --dry-run
Demo traffic continues at 5 events/s; Ctrl-C stops it and the worker.
TXT

"$bin/valuestream" demo --customers 200 --events 1000000 --rate 5 &
demo=$!
wait "$demo" || true
