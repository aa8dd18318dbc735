"""The fleet-ceiling arithmetic and the load generator's figures (no timing is asserted)."""

from collections import Counter

import pytest

from bench import ceiling
from bench.loadgen import Load

PER_JOB = {"statements": 24.0, "transactions": 8.0, "worker_cpu_ms": 40.0, "postgres_cpu_ms": 10.0}
CAPACITY = {"simple_update_tps": {2: 3000.0, 8: 5000.0, 32: 4800.0}, "select_only_tps": 60000.0}


def test_a_job_costs_its_transactions_at_the_update_rate_and_extra_statements_at_the_read_rate():
    sizing = ceiling.size_fleet(PER_JOB, CAPACITY, cores=2, concurrency=16)
    # 8 write transactions carry 24 statements: no statement left over for the read rate
    assert sizing["jobs_per_s_by_pgbench"] == pytest.approx(5000 / 8)
    more = ceiling.size_fleet({**PER_JOB, "statements": 30.0}, CAPACITY, cores=2, concurrency=16)
    assert 1 / more["jobs_per_s_by_pgbench"] == pytest.approx(8 / 5000 + 6 / 60000)


def test_the_ceiling_is_the_lower_of_the_pgbench_model_and_postgres_cpu_per_job():
    sizing = ceiling.size_fleet(PER_JOB, CAPACITY, cores=2, concurrency=16)
    assert sizing["jobs_per_s_by_postgres_cpu"] == pytest.approx(200)
    assert sizing["jobs_per_s"] == pytest.approx(200)
    assert sizing["worker_processes"] == 8  # 200 jobs/s x 40 ms of worker CPU
    assert sizing["client_connections"] == 8 * 20
    assert sizing["server_connections"] == 8  # within 10% of the best rate


def test_a_night_of_a_million_jobs():
    night = ceiling.size_fleet(PER_JOB, CAPACITY, cores=2, concurrency=16)["night"]
    assert night["worker_cpu_hours"] == pytest.approx(1e6 * 0.040 / 3600)
    assert night["transactions"] == 8e6
    assert night["statements"] == 24e6
    assert night["hours_at_ceiling"] == pytest.approx(1e6 / 200 / 3600)


def test_pgbench_urls_lose_the_driver():
    assert (
        ceiling._libpq("postgresql+psycopg://postgres@127.0.0.1:5432/x")
        == "postgresql://postgres@127.0.0.1:5432/x"
    )


def test_pgbench_output_is_read_without_the_connection_time():
    out = "tps = 5513.1 (without initial connection time)\n"
    found = ceiling._TPS.search(out)
    assert found and float(found.group(1)) == 5513.1


def test_load_counts_only_2xx_as_done_and_everything_else_as_errors():
    load = Load(seconds=2.0, latencies_s=[0.1, 0.2, 0.3, 0.4])
    load.statuses = Counter({"202": 4, "500": 1, "ReadError": 2})
    assert (load.ok, load.errors, load.per_s) == (4, 3, 2.0)
    assert load.latency_ms(50) == pytest.approx(250)
    assert Load().per_s == 0.0
