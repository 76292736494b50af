# One image for the API and the worker (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml ./
COPY core core
COPY providers providers
COPY storage storage
COPY workflows workflows
COPY activities activities
COPY api api
COPY emulators emulators
COPY devstack devstack
COPY migrations migrations
COPY alembic.ini worker.py ./
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
