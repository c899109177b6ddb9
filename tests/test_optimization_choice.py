"""Choosing among candidates: the Pareto front, and the pick by the objective among those meeting every goal."""



from dnnkit.optimization.choice import choose, judge, pareto
from dnnkit.config.goals import Goals


def _row(name, target="tflite", status="verified", bytes_=1000, p50=1.0, degradation=0.0, entry=True):
    return {"name": name, "target": target, "status": status, "bytes": bytes_, "latency_p50_ms": p50,
            "degradation": degradation, "top1_agreement": None, "float_layers": 0, "reason": None,
            "entry": name if entry else None}


def test_pareto_front_of_a_hand_made_candidate_list():
    rows = [
        _row("a", bytes_=1000, p50=1.0, degradation=0.000),   # most accurate
        _row("b", bytes_=400, p50=2.0, degradation=0.004),    # smallest
        _row("c", bytes_=900, p50=0.5, degradation=0.002),    # fastest
        _row("d", bytes_=1000, p50=1.0, degradation=0.001),   # a, but worse: dominated by a
        _row("e", bytes_=500, p50=2.5, degradation=0.004),    # b, but larger and slower: dominated by b
        _row("f", bytes_=400, p50=2.0, degradation=0.004),    # equal to b: neither dominates the other
        _row("g", bytes_=300, p50=None, degradation=0.1),     # no latency: not compared
    ]
    assert pareto(rows) == ["a", "b", "c", "f"]
    assert [r["pareto"] for r in rows] == [True, True, True, False, False, True, None]


def test_choice_follows_the_objective_among_candidates_meeting_every_goal():
    def rows():
        return [_row("fp32", bytes_=1000, p50=1.0), _row("int8", bytes_=300, p50=0.8),
                _row("fast", bytes_=600, p50=0.2), _row("tiny", status="failed", bytes_=100, p50=0.1, degradation=0.2),
                _row("onnx_int8", target="onnx", bytes_=350, p50=0.3)]

    smallest = rows()
    judge(smallest, Goals(target="both"))
    assert choose(smallest, Goals(target="both")) == {"chosen": {"tflite": "int8", "onnx": "onnx_int8"},
                                                      "closest": {}, "met": True}
    fastest = rows()
    judge(fastest, Goals(target="tflite", objective="fastest"))
    assert choose(fastest, Goals(target="tflite", objective="fastest"))["chosen"] == {"tflite": "fast"}
    sized = rows()
    goals = Goals(target="tflite", max_size_kb=0.5, max_latency_ms=0.5)  # 512 bytes and 0.5 ms
    judge(sized, goals)
    assert [r["goals"] for r in sized[:2]] == [{"degradation": True, "size": False, "latency": False},
                                               {"degradation": True, "size": True, "latency": False}]
    picked = choose(sized, goals)
    # nothing meets all three; one goal missed beats two, then the smaller relative excess:
    # fast 600/512 bytes (+17 %), int8 0.8/0.5 ms (+60 %), tiny a 0.2 drop (19x over), fp32 two goals
    assert picked["met"] is False and picked["chosen"] == {}
    assert picked["closest"]["tflite"] == ["fast", "int8", "tiny"]
