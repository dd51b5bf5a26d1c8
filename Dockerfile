FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY docsieve ./docsieve
COPY worker ./worker
COPY scheduler ./scheduler
# The deployment's image: the core, the Celery side (workers, scheduler, Flower, PostgreSQL driver) and the
# HTTP service.
RUN pip install '.[deploy,api]' && useradd --create-home --uid 10001 docsieve

USER docsieve
CMD ["docsieve", "--help"]
