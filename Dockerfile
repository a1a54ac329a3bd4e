# Relais — one image for every part of the platform (web, DICOM node, worker, projections, CLI).
# The part is chosen by the command: `docker run relais serve`, `… scp`, `… projections run directory`.
# Without RELAIS_DATABASE_URL, `relais up` (the default command) runs everything in one container
# on an embedded PostgreSQL under /var/lib/relais; docker-compose.yml runs each part on its own.

# ---------------------------------------------------------------------------- build
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# A virtualenv at the same path as in the runtime stage (its scripts' shebangs point there).
RUN python -m venv /opt/relais
ENV PATH=/opt/relais/bin:$PATH

WORKDIR /src
# Dependencies first, on their own layer: they change far less often than the code.
# The lock pins every transitive version; pip installs only what pyproject.toml asks for.
COPY pyproject.toml requirements.lock README.md ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/direct.txt \
 && pip install -c requirements.lock -r /tmp/direct.txt

COPY domain ./domain
COPY application ./application
COPY projections ./projections
COPY adapters ./adapters
COPY web ./web
COPY entrypoints ./entrypoints
RUN pip install -c requirements.lock . && pip check

# ---------------------------------------------------------------------------- runtime
FROM python:3.11-slim

LABEL org.opencontainers.image.title="Relais" \
      org.opencontainers.image.description="Plateforme régionale de télé-expertise" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

ENV PATH=/opt/relais/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAIS_DATA_DIR=/var/lib/relais \
    RELAIS_HTTP_HOST=0.0.0.0 \
    RELAIS_DICOM_HOST=0.0.0.0

# A fixed, unprivileged uid/gid so that volume ownership stays the same across image rebuilds.
# Pango and DejaVu fonts: WeasyPrint lays out the opinion report PDF with them.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 relais \
 && useradd --system --uid 10001 --gid relais --home-dir /var/lib/relais --shell /usr/sbin/nologin relais \
 && install -d -o relais -g relais -m 0750 /var/lib/relais

COPY --from=build /opt/relais /opt/relais

USER relais
WORKDIR /var/lib/relais
# Mount a named volume here (`-v relais-data:/var/lib/relais`): a new one starts with this
# folder's owner (relais), so the non-root processes can write files and the embedded database.
# No VOLUME instruction: it would leave an anonymous volume behind every one-off container.

# 8000: web (put a TLS reverse proxy in front); 11112: DICOM node (C-ECHO, C-STORE).
EXPOSE 8000 11112

ENTRYPOINT ["relais"]
CMD ["up"]
