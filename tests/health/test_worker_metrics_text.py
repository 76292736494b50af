"""Several workers' Prometheus texts merged into one valid exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import merge_expositions

WORKER = """\
# HELP temporal_request Count of client request successes by rpc name
# TYPE temporal_request counter
temporal_request{namespace="default",operation="StartWorkflowExecution"} 3
# HELP temporal_num_pollers Current number of active pollers per queue type
# TYPE temporal_num_pollers gauge
temporal_num_pollers{poller_type="activity_task",task_queue="media-jobs"} 5
# HELP temporal_request_buckets Histogram of client requests (a histogram family)
# TYPE temporal_request_buckets histogram
temporal_request_buckets_bucket{operation="X",le="50"} 1
temporal_request_buckets_bucket{operation="X",le="+Inf"} 2
temporal_request_buckets_sum{operation="X"} 75
temporal_request_buckets_count{operation="X"} 2
untyped_thing 7
"""


def test_two_workers_keep_one_family_each_and_their_own_series() -> None:
    merged = merge_expositions([("http://a/metrics", WORKER), ("http://b/metrics", WORKER)])
    assert merged.count("# TYPE temporal_request counter") == 1
    assert merged.count("# HELP temporal_request_buckets ") == 1
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    pollers = families["temporal_num_pollers"].samples
    assert sorted(s.labels["worker_url"] for s in pollers) == [
        "http://a/metrics",
        "http://b/metrics",
    ]
    assert all(s.labels["task_queue"] == "media-jobs" for s in pollers)
    buckets = [
        s for s in families["temporal_request_buckets"].samples if s.name.endswith("_bucket")
    ]
    assert len(buckets) == 4
    untyped = [
        s.labels["worker_url"]
        for f in text_string_to_metric_families(merged)
        for s in f.samples
        if s.name == "untyped_thing"
    ]
    assert untyped == ["http://a/metrics", "http://b/metrics"]


def test_a_label_value_with_quotes_is_escaped() -> None:
    merged = merge_expositions([('http://x/"q"', "up 1\n")])
    (family,) = text_string_to_metric_families(merged)
    assert family.samples[0].labels == {"worker_url": 'http://x/"q"'}


@pytest.mark.parametrize("body", ["<html>not metrics</html>", "# TYPE x\n", "a b c d e\n"])
def test_what_is_not_prometheus_text_is_refused(body: str) -> None:
    with pytest.raises(ValueError):
        merge_expositions([("http://x/metrics", body)])
