# The Airflow image of the stack (docker-compose.yaml): the project's code is baked in, so a Celery
# worker on any host runs the same DAG and modules as the scheduler with nothing mounted.
FROM apache/airflow:3.3.2-python3.11

# torch first and alone. From PyPI this is the CUDA build (large; GPU workers need it); point
# PIP_EXTRA_INDEX_URL at a CPU wheel index for a slim CPU-only image:
#   docker compose build --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
COPY requirements.txt constraints.txt requirements-stack.txt /opt/airflow/
# Everything but this repository's Milvus provider (the `-e ./providers/milvus` line), which is installed
# on its own below: editing the provider then rebuilds that small layer, not torch and the rest.
RUN pip install --no-cache-dir torch==2.13.0 \
 && grep -v '^-e ./providers/' /opt/airflow/requirements.txt > /opt/airflow/requirements-image.txt \
 && pip install --no-cache-dir -r /opt/airflow/requirements-image.txt \
 && pip install --no-cache-dir -r /opt/airflow/requirements-stack.txt
COPY providers/milvus /opt/airflow/providers/milvus
RUN pip install --no-cache-dir --no-deps /opt/airflow/providers/milvus

COPY dags /opt/airflow/dags
COPY plugins /opt/airflow/plugins
COPY include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow
