"""A job's stage timings: one record per outermost job, nested calls sharing it, nothing outside a job."""

from dnnkit.jobs.timing import current, job, stage, timings_record


def test_stages_add_up_inside_one_job_and_nothing_is_timed_outside(monkeypatch):
    monkeypatch.setenv("DNNKIT_PRESTART", "0")  # no worker processes for this test
    assert current() is None
    with stage("data_s"):  # outside a job: not recorded anywhere
        pass
    with job(convert=False) as timings:
        assert current() is timings
        with stage("data_s"):
            pass
        with job() as inner:  # a nested call shares the outer job's record
            assert inner is timings
            with stage("data_s"):
                pass
        record = timings_record(timings)
    assert current() is None
    assert record["data_s"] >= 0 and record["wall_s"] >= record["data_s"] and record["cpu_s"]["parent"] >= 0
    assert not {"started", "cpu_started", "workers_cpu_before"} & set(record)
