FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY scheduler ./scheduler
RUN pip install . && useradd --create-home --uid 10001 docsieve

USER docsieve
CMD ["docsieve", "--help"]
