# The Airflow image of the stack (docker-compose.yaml): the project's code is baked in, so a Celery
# worker on any host runs the same DAG and modules as the scheduler with nothing mounted.
FROM apache/airflow:3.3.2-python3.11

# torch first and alone. From PyPI this is the CUDA build (large; GPU workers need it); point
# PIP_EXTRA_INDEX_URL at a CPU wheel index for a slim CPU-only image:
#   docker compose build --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
COPY requirements.txt constraints.txt requirements-stack.txt /opt/airflow/
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -r /opt/airflow/requirements.txt \
 && pip install --no-cache-dir -r /opt/airflow/requirements-stack.txt

COPY dags /opt/airflow/dags
COPY plugins /opt/airflow/plugins
COPY include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow
