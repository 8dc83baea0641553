"""A fixture model for model-assisted labeling: a valid YOLO-shaped ONNX detector that always finds the same box."""

from __future__ import annotations


def box_detector(score: float = 0.9) -> bytes:
    """32x32 input, output [1, 5, 8]: one scratch centred in the input (cx 16, cy 16, w 12, h 8, ``score``: 0.9 is
    confident; within the edge component's feedback band, 0.25-0.6, every frame is uncertain and sent back).

    Letterboxed from a 160x120 image (scale 0.2, 4 px of padding above and below) it is the box
    (left 50, top 40, width 60, height 40) in the image's pixels."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    const = np.zeros((1, 5, 8), dtype=np.float32)
    const[0, :, 0] = [16, 16, 12, 8, score]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "loupe-fixed-box",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 8])],
        [numpy_helper.from_array(const, "boxes"), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()
