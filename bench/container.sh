#!/usr/bin/env bash
# Build the production image and run it on this machine, with no container registry: podman from Debian's packages,
# on a base image made by debootstrap from Debian's packages and tagged as the Dockerfile's BASE. Then check what a
# deployment checks: the image's size, /health/ready, and one chat turn against a fake OpenAI-compatible endpoint
# (the scripted model, served from the checkout's venv on the host).
#
#   bash bench/container.sh        (as root; installs podman and debootstrap if missing; not part of CI)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=localhost/debian-python:bookworm
IMAGE=localhost/todo-agent:check
PORT=${PORT:-18000}
FAKE_PORT=${FAKE_PORT:-18001}
SECRET=container-check-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PODMAN=(podman --runtime runc)
# This machine kind's containers get no default ulimits, and podman's own exceed what a process here may set.
ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; }; }
need podman podman
need debootstrap debootstrap
need runc runc

if ! "${PODMAN[@]}" image exists "$BASE"; then
  echo "== base image from Debian's packages (debootstrap bookworm + python3)"
  root=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" http://deb.debian.org/debian >/dev/null
  tar -C "$root" -c . | "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
fi

echo "== build"
# Behind a TLS-inspecting proxy (as on these machines) pip in the build needs the host's CA bundle: lend it, and a
# pip.conf naming it, to the build's RUN steps only (nothing of it lands in the image).
PIPCONF=$(mktemp)
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$PIPCONF"
LEND=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro --volume "$PIPCONF:/etc/pip.conf:ro")
time "${PODMAN[@]}" build --network host "${ULIMITS[@]}" "${LEND[@]}" --build-arg BASE="$BASE" -t "$IMAGE" . >/tmp/container-build.log 2>&1 \
  || { tail -40 /tmp/container-build.log; exit 1; }
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"

echo "== a fake OpenAI-compatible endpoint on 127.0.0.1:$FAKE_PORT (the scripted model)"
.venv/bin/python -c "
import uvicorn
from evals.reference_agent import reference_responder
from evals.scripted_model import create_scripted_app
uvicorn.run(create_scripted_app(reference_responder), host='127.0.0.1', port=$FAKE_PORT, log_level='warning')
" &
FAKE=$!
cleanup() { "${PODMAN[@]}" rm -f todo-agent-check >/dev/null 2>&1 || true; kill "$FAKE" 2>/dev/null || true; }
trap cleanup EXIT

echo "== run"
"${PODMAN[@]}" run -d --name todo-agent-check --network host "${ULIMITS[@]}" \
  -e PORT="$PORT" -e BETTER_AUTH_SECRET="$SECRET" -e AGENT_MODEL=scripted \
  -e OPENAI_BASE_URL="http://127.0.0.1:$FAKE_PORT/v1" -e OPENAI_API_KEY=unused "$IMAGE" >/dev/null
for _ in $(seq 60); do
  code=$(curl -s -o /tmp/container-ready.json -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready" || true)
  [ "$code" = 200 ] && break
  sleep 1
done
echo "/health/ready: $code $(cat /tmp/container-ready.json 2>/dev/null)"
[ "$code" = 200 ] || { "${PODMAN[@]}" logs todo-agent-check | tail -30; exit 1; }
echo "user: $("${PODMAN[@]}" exec todo-agent-check id -un)"
TOKEN=$(ENVIRONMENT=development BETTER_AUTH_SECRET="$SECRET" .venv/bin/todo-agent token alice)
echo "== a turn"
curl -s -X POST "http://127.0.0.1:$PORT/api/alice/chat" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"message": "Add a task to buy milk"}'
echo
echo "== the refusal without a model runtime (AGENT_MODEL=local in production)"
"${PODMAN[@]}" run --rm --network host "${ULIMITS[@]}" -e BETTER_AUTH_SECRET="$SECRET" -e PORT=$((PORT + 2)) "$IMAGE" 2>&1 | tail -2 || true
