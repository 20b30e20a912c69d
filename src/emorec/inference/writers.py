"""The three output formats of batch prediction: text lines, CSV rows and one JSON document.

A writer gets ``faces(path, faces, size=, frame=, time_s=)`` for each image or analysed video
frame and ``error(path, msg)`` for an input that failed; ``close()`` finishes the output."""
from __future__ import annotations

from emorec.files import display_name
from emorec.inference.face import image_record


def printable(text) -> str:
    """One line whatever the file name holds: control characters as escapes (a newline as \\n),
    bytes that are not UTF-8 as \\xNN."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in display_name(str(text)))


class TextWriter:
    """``path  face#  x,y,w,h  label  confidence`` per face; "no face found" lines."""

    HEADER = "# path  face  x,y,w,h (box in pixels)  label confidence"

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self._write(self.HEADER + ("  [next labels]" if top_k > 1 else ""))

    def _write(self, line: str) -> None:
        if self.stream.isatty():  # a progress bar may share the terminal: let tqdm redraw it
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        where = printable(path) if frame is None else f"{printable(path)} frame {frame}"
        if not faces:
            self._write(f"{where}  no face found")
        for i, f in enumerate(faces, 1):
            x, y, w, h = f.box
            labels = "  ".join(f"{c} {p:.3f}" for c, p in f.top_k(self.top_k))
            self._write(f"{where}  {i}  {x},{y},{w},{h}  {labels}")

    def error(self, path, msg: str) -> None:  # already on stderr
        pass

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    def __init__(self, stream, predictor, top_k: int):
        import csv

        self.classes = predictor.classes
        self.writer = csv.writer(stream)
        self.stream = stream
        self.writer.writerow(["path", "frame", "time_s", "face", "x", "y", "w", "h", "det_score", "label",
                              "confidence", *[f"p_{c}" for c in self.classes], "error"])

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        frame_cols = ["" if frame is None else frame, "" if time_s is None else f"{time_s:.3f}"]
        path = display_name(path)
        if not faces:
            self.writer.writerow([path, *frame_cols] + [""] * (8 + len(self.classes)) + [""])
        for i, f in enumerate(faces, 1):
            self.writer.writerow([path, *frame_cols, i, *f.box, f"{f.det_score:.4f}", f.label,
                                  f"{f.confidence:.6f}", *[f"{f.probs[c]:.6f}" for c in self.classes], ""])

    def error(self, path, msg: str) -> None:
        self.writer.writerow([display_name(path)] + [""] * (10 + len(self.classes)) + [display_name(msg)])

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """One JSON document: model facts and one :func:`image_record` per image or analysed frame."""

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self.doc = {"model": str(predictor.model_path), "classes": predictor.classes,
                    "detector": predictor.detector_name, "results": []}

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        extra = {} if frame is None else {"frame": frame, "time_s": round(time_s or 0.0, 3)}
        self.doc["results"].append(image_record(display_name(path), faces, size, self.top_k, **extra))

    def error(self, path, msg: str) -> None:
        self.doc["results"].append(image_record(display_name(path), [], error=display_name(msg)))

    def close(self) -> None:
        import json

        json.dump(self.doc, self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()


WRITERS = {"text": TextWriter, "csv": CsvWriter, "json": JsonWriter}
