# The Airflow image of the production-like stack (docker-compose.yaml).
FROM apache/airflow:3.3.2-python3.11

# torch first and alone. From PyPI this is the CUDA build (large); point PIP_EXTRA_INDEX_URL at a
# CPU wheel index for a slim image: docker compose build --build-arg PIP_EXTRA_INDEX_URL=...
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
COPY requirements.txt constraints.txt /opt/airflow/
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -r /opt/airflow/requirements.txt "apache-airflow[postgres]==3.3.2"
