"""Teachers cut from the GPU-trained ensemble in git history: 160 px MobileNetV2 networks trained
on an H100 (g5s7 on FER2013's 5 classes, g7 on its 7, g8 on FER+'s 8 vote shares; their rows in
benchmarks/accuracy.md), shipped int8 as one file in 5a8fee0 and no longer in models/.

    git show 5a8fee0:models/best_model.onnx > runs/gpu_ens/ens5.onnx
    python studies/gpu_members.py runs/gpu_ens/ens5.onnx runs/gpu_ens/g7+g8.onnx --members g7 g8

writes an emorec ONNX file of the named members over the 7 FER classes (g8's contempt row
dropped), mean probability, fed as the ensemble is (its metadata's size, colour and crop), so that `emorec evaluate` and `emorec data distill` read it like any
model. The ensemble file itself already is the 5-class teacher.
"""
import argparse
from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from emorec.config import FER_CLASSES
from emorec.modelfile import META_KEY, ModelInfo

HEADS = {"g7": ("linear_1", None), "g8": ("linear_2", [0, 2, 3, 4, 5, 6, 7])}  # g8: FER+'s 8, contempt 2nd


def cut(model: onnx.ModelProto, members: list[str]) -> onnx.ModelProto:
    meta = {p.key: p.value for p in model.metadata_props}
    info = replace(ModelInfo.from_json(meta[META_KEY]), classes=FER_CLASSES, metrics={}, version="",
                   backbone=f"mobilenet_v2 x{len(members)} ({'+'.join(members)} of the ensemble)")
    model = onnx.shape_inference.infer_shapes(model)  # the extractor needs the heads' shapes
    sub = onnx.utils.Extractor(model).extract_model(["input"], [HEADS[m][0] for m in members])
    g = sub.graph
    del g.output[:]
    probs = []
    for m in members:
        logits, rows = HEADS[m]
        if rows is not None:
            g.initializer.append(numpy_helper.from_array(np.array(rows, np.int64), f"{m}_rows"))
            g.node.append(helper.make_node("Gather", [logits, f"{m}_rows"], [f"{m}_7"], axis=1))
            logits = f"{m}_7"
        g.node.append(helper.make_node("Softmax", [logits], [f"{m}_p"], axis=1))
        probs.append(f"{m}_p")
    # log of the summed probabilities: the softmax inference applies gives back their mean
    g.node.append(helper.make_node("Sum", probs, ["p_sum"]))
    g.node.append(helper.make_node("Log", ["p_sum"], ["logits"]))
    g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(FER_CLASSES)]))
    del sub.metadata_props[:]
    prop = sub.metadata_props.add()
    prop.key, prop.value = META_KEY, info.to_json()  # the ensemble's input settings, the 7 classes
    onnx.checker.check_model(sub)
    return sub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ensemble", help="5a8fee0:models/best_model.onnx, written to a file")
    ap.add_argument("out")
    ap.add_argument("--members", nargs="+", choices=sorted(HEADS), default=["g7", "g8"])
    args = ap.parse_args()
    onnx.save(cut(onnx.load(args.ensemble), args.members), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
