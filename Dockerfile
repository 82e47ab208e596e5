# dsocr serve: DeepSeek-OCR behind an OpenAI-compatible API and /v1/convert (docs/serve.md).
#
#   docker build -t dsocr-serve .
#   docker run --gpus all -p 8000:8000 -e DSOCR_API_KEY=change-me \
#       -v /path/to/DeepSeek-OCR:/model:ro dsocr-serve
#
# The model folder (config.json, *.safetensors, tokenizer.json) is mounted at /model; flags
# given to `docker run` after the image name replace CMD (keep --port 8000: the
# HEALTHCHECK asks there).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG EXTRAS=model,serve,hub
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/dsocr \
    PATH=/opt/dsocr/bin:$PATH \
    DSOCR_MODEL=/model \
    HF_HOME=/home/dsocr/.cache/huggingface \
    TRITON_CACHE_DIR=/home/dsocr/.cache/triton

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core_model ./core_model
COPY dsocr_connectors ./dsocr_connectors
COPY loaders ./loaders
COPY splitters ./splitters
# hadolint ignore=DL3013
RUN pip install --upgrade pip \
    && pip install ".[${EXTRAS}]" \
    && dsocr serve --help > /dev/null

RUN groupadd --gid 10001 dsocr \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin dsocr \
    && mkdir /model /home/dsocr/.cache \
    && chown 10001:10001 /model /home/dsocr/.cache
USER 10001:10001
WORKDIR /home/dsocr
VOLUME ["/model"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["dsocr", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/model"]
