# openfero: one image for both services; the command picks one.
#   docker build -t openfero .
#   docker run openfero ingest          # or: dispatcher, console, render, validate, dlq, replay
#
# Stage 1 builds wheels for openfero and its pinned dependencies; stage 2
# installs them into a slim Python with no compiler and runs as a non-root user.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY ingest ./ingest
COPY dispatcher ./dispatcher
COPY openfero ./openfero
COPY console ./console
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim-bookworm
# docker build --build-arg REVISION=$(git rev-parse HEAD) .: shown in openfero_build_info
ARG REVISION=unknown
ENV OPENFERO_REVISION=$REVISION \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels openfero \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin openfero
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["openfero"]
CMD ["ingest"]
