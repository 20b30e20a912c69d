"""The three output formats of batch prediction: text lines, CSV rows and one JSON document.

A writer gets ``faces(path, faces, size=, frame=, time_s=)`` for each image or analysed video
frame, ``video(summary)`` after each video (``people.video_summary``), ``error(path, msg)`` for
an input that failed; ``close()`` finishes the output. A video's faces are ``TrackedFace``: the
person's track id, the smoothed label, raw and smoothed probabilities."""
from __future__ import annotations

from emorec.files import display_name
from emorec.inference.face import image_record
from emorec.inference.people import summary_table


def printable(text) -> str:
    """One line whatever the file name holds: control characters as escapes (a newline as \\n),
    bytes that are not UTF-8 as \\xNN."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in display_name(str(text)))


def frame_record(path, faces, size, top_k: int, frame: int | None, time_s: float | None) -> dict:
    """An image's record; a video frame's adds its number and time."""
    extra = {} if frame is None else {"frame": frame, "time_s": round(time_s or 0.0, 3)}
    return image_record(display_name(path), faces, size, top_k, **extra)


def printable_lines(text: str) -> str:
    return "\n".join(printable(line) for line in text.splitlines())


class TextWriter:
    """``path  face#  x,y,w,h  label  confidence`` per face, "no face found" lines; for a video,
    its per-person summary table instead of a line per frame."""

    HEADER = "# path  face  x,y,w,h (box in pixels)  label confidence"

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self._header = self.HEADER + ("  [next labels]" if top_k > 1 else "")  # before the first image

    def _image_line(self, line: str) -> None:
        if self._header:
            self._write(self._header)
            self._header = ""
        self._write(line)

    def _write(self, line: str) -> None:
        if self.stream.isatty():  # a progress bar may share the terminal: let tqdm redraw it
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        if frame is not None:  # a video: said by its summary
            return
        where = printable(path)
        if not faces:
            self._image_line(f"{where}  no face found")
        for i, f in enumerate(faces, 1):
            x, y, w, h = f.box
            labels = "  ".join(f"{c} {p:.3f}" for c, p in f.top_k(self.top_k))
            self._image_line(f"{where}  {i}  {x},{y},{w},{h}  {labels}")

    def video(self, summary: dict) -> None:
        self._write(printable_lines(summary_table(summary)))

    def error(self, path, msg: str) -> None:  # already on stderr
        pass

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    """A row per face (or per face-less image or frame). Video rows add the person's ``track``
    and the smoothed probabilities ``s_<class>``; their ``label`` and ``confidence`` are the
    smoothed ones, ``p_<class>`` the frame's own."""

    def __init__(self, stream, predictor, top_k: int):
        import csv

        self.classes = predictor.classes
        self.writer = csv.writer(stream)
        self.stream = stream
        self.header = ["path", "frame", "time_s", "face", "track", "x", "y", "w", "h", "det_score", "label",
                       "confidence", *[f"p_{c}" for c in self.classes], *[f"s_{c}" for c in self.classes], "error"]
        self.writer.writerow(self.header)

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        frame_cols = ["" if frame is None else frame, "" if time_s is None else f"{time_s:.3f}"]
        path = display_name(path)
        if not faces:
            self.writer.writerow([path, *frame_cols] + [""] * (len(self.header) - 3))
        for i, f in enumerate(faces, 1):
            smoothed = getattr(f, "smoothed", None)
            self.writer.writerow([path, *frame_cols, i, getattr(f, "track", ""), *f.box, f"{f.det_score:.4f}",
                                  f.label, f"{f.confidence:.6f}", *[f"{f.probs[c]:.6f}" for c in self.classes],
                                  *[f"{smoothed[c]:.6f}" if smoothed else "" for c in self.classes], ""])

    def video(self, summary: dict) -> None:  # rows only; the summary goes to --summary
        pass

    def error(self, path, msg: str) -> None:
        self.writer.writerow([display_name(path)] + [""] * (len(self.header) - 2) + [display_name(msg)])

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """One JSON document: model facts and one :func:`image_record` per image or analysed frame."""

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self.doc = {"model": str(predictor.model_path), "classes": predictor.classes,
                    "detector": predictor.detector_name, "results": [], "videos": []}

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        self.doc["results"].append(frame_record(path, faces, size, self.top_k, frame, time_s))

    def video(self, summary: dict) -> None:
        self.doc["videos"].append(summary)

    def error(self, path, msg: str) -> None:
        self.doc["results"].append(image_record(display_name(path), [], error=display_name(msg)))

    def close(self) -> None:
        import json

        json.dump(self.doc, self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()


class JsonLinesWriter:
    """One :func:`image_record` per line, written as it comes (a long video's rows are never held):
    an image, an analysed video frame, or an input that failed."""

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k

    def _line(self, record: dict) -> None:
        import json

        self.stream.write(json.dumps(record) + "\n")

    def faces(self, path, faces, size=None, frame: int | None = None, time_s: float | None = None) -> None:
        self._line(frame_record(path, faces, size, self.top_k, frame, time_s))

    def video(self, summary: dict) -> None:  # rows only; the summary goes to --summary
        pass

    def error(self, path, msg: str) -> None:
        self._line(image_record(display_name(path), [], error=display_name(msg)))

    def close(self) -> None:
        self.stream.flush()


WRITERS = {"text": TextWriter, "csv": CsvWriter, "json": JsonWriter, "jsonl": JsonLinesWriter}
