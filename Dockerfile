# The production image: the API alone (the chat contract, ChatKit, MCP, /metrics), served by uvicorn workers
# against PostgreSQL and an OpenAI-compatible model endpoint. No playground, eval stack or local model: see
# docs/deployment.md to add the bundled model.
#
#   docker build -t todo-agent .            (or: podman build; bench/container.sh builds and runs it here)
#   docker run -e BETTER_AUTH_SECRET=... -e DATABASE_URL=postgresql://... -e AGENT_MODEL=gpt-4.1-mini \
#              -e OPENAI_API_KEY=... -p 8000:8000 todo-agent
#
# BASE: any image with Python 3.11+ and venv (pin it by digest in your registry: BASE=python:3.11-slim@sha256:...).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in a layer of their own: an edit of the code does not reinstall them.
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md LICENSE ./
COPY backend ./backend
COPY evals ./evals
COPY playground ./playground
COPY todo_agent ./todo_agent
RUN pip install --no-deps . && rm -rf /src

FROM ${BASE}
RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=2 \
    DATA_DIR=/home/app/data
USER app
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=2)"]
CMD ["todo-agent", "serve"]
