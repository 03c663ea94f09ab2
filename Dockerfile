# dmledger: `docker build -t dmledger .` then, on PostgreSQL, once per release
# `docker run -e DMLEDGER_DATABASE_URL=postgresql://... dmledger db upgrade` and
# `docker run -e DMLEDGER_DATABASE_URL=postgresql://... -e DMLEDGER_SECRET_KEY=... -p 8000:8000 dmledger`
# (deploy/compose.yaml runs the whole deployment).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DMLEDGER_HOST=0.0.0.0 \
    DMLEDGER_DATA_DIR=/var/lib/dmledger

WORKDIR /app
# Exactly the versions (and files, by hash) of requirements.lock, in a layer of their own;
# then dmledger itself, built with the locked setuptools, resolving nothing again.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY application/ application/
COPY infrastructure/ infrastructure/
COPY interfaces/ interfaces/
COPY projections/ projections/
RUN pip install --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --home-dir /var/lib/dmledger --create-home dmledger

USER dmledger
WORKDIR /var/lib/dmledger
# The SQLite default (var/dmledger.sqlite3 here) and a development key live in this
# directory: mount a volume on it, or use PostgreSQL (DMLEDGER_DATABASE_URL).
VOLUME ["/var/lib/dmledger"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["dmledger"]
CMD ["serve"]
