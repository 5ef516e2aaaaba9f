"""dicomtoprint batch: every series under a folder through the same settings, broken series among them, no patient
data in anything it writes or says, resuming, and the same models from a Dask cluster as from the process pool."""

import csv
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import pydicom
from pydicom.uid import generate_uid

import DicomToPrintTesting as testing
from DicomToPrintLib import batch, sampledata
from DicomToPrintLib.logic import DicomToPrintParameters
from DicomToPrintLib.runtime import isSlicerApplication
from DicomToPrintTesting import runCli

PATIENT = {"PatientName": "Doe^John", "PatientID": "JD-19700101", "PatientBirthDate": "19700101"}
#: what must never leave: patient data in the folder names, and every identifier in the headers
PATIENT_TEXTS = list(dict.fromkeys(["DOE_JOHN", "ROE_JANE", "19700101", "19800202", *PATIENT.values(),
                                    *sampledata.SYNTHETIC_PATIENT.values()]))
SETTINGS = {"targetTriangles": 20000, "writePreview": False}
SMALL = {"shape": (32, 32, 12), "spacing": (1.6, 1.6, 3.0)}


def expectedId(folder: str) -> str:
    """The neutral id of the series in a folder, from the rule (SHA-256 of the SeriesInstanceUID, 16 digits)."""
    path = os.path.join(folder, sorted(os.listdir(folder))[0])
    uid = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SeriesInstanceUID)
    return "series-" + hashlib.sha256(uid.encode()).hexdigest()[:16]


def writeStudies(root: str) -> dict:
    """Two patients' studies in folders named after them: three good series, a conflicting one, a truncated one, a
    single image, and an empty file on its own. Returns name -> series folder."""
    doe, roe = os.path.join(root, "DOE_JOHN_19700101"), os.path.join(root, "ROE_JANE_19800202", "2023-05-04")
    folders = {"knee": os.path.join(doe, "CT_knee"), "shell": os.path.join(doe, "CT_2"),
               "conflict": os.path.join(doe, "CT_3"), "scout": os.path.join(doe, "SCOUT"),
               "hip": os.path.join(roe, "ser1"), "truncated": os.path.join(roe, "ser2")}
    sampledata.writePhantomSeries("twoparts", folders["knee"], shape=(64, 64, 36), spacing=(0.8, 0.8, 1.0),
                                  patient=PATIENT, seriesDescription="Knee Doe John")
    sampledata.writePhantomSeries("shell", folders["shell"], shape=(64, 64, 40), spacing=(1.2, 1.2, 1.5),
                                  patient=PATIENT)
    sampledata.writePhantomSeries("twoparts", folders["hip"], shape=(64, 64, 36), spacing=(0.8, 0.8, 1.0), seed=1)
    sampledata.writePhantomSeries("twoparts", folders["scout"], patient=PATIENT, keepSlices=[5], **SMALL)
    # a second file at a slice's position with other pixels: found as a series, refused by the worker
    paths = sampledata.writePhantomSeries("twoparts", folders["conflict"], patient=PATIENT, **SMALL)
    ds = pydicom.dcmread(paths[0])
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = (ds.pixel_array + 7).astype(np.uint16).tobytes()
    ds.save_as(os.path.join(folders["conflict"], "CONFLICT"))
    # a file cut to half its bytes: damaged, but its header still names its series
    paths = sampledata.writePhantomSeries("twoparts", folders["truncated"], **SMALL)
    with open(paths[4], "rb") as f:
        data = f.read()
    with open(paths[4], "wb") as f:
        f.write(data[: len(data) // 2])
    os.makedirs(os.path.join(roe, "notes"))
    open(os.path.join(roe, "notes", "EMPTY"), "wb").close()  # damaged, and of no series
    return folders


def runCommand(*argv) -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, seconds) of ``dicomtoprint batch`` in its own process: the workers' output
    is captured too."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "DicomToPrintLib", "batch", *map(str, argv)],
                               capture_output=True, text=True, check=False)
    return completed.returncode, completed.stdout, completed.stderr, time.perf_counter() - started



def readSummary(outputRoot: str) -> list[dict]:
    with open(os.path.join(outputRoot, "summary.csv"), encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == list(batch.SUMMARY_COLUMNS), reader.fieldnames
    return rows


def stlTriangles(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(80)
        return struct.unpack("<I", f.read(4))[0]


def readBytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def patientTextsIn(data: bytes) -> list[str]:
    """Which of the patient texts occur in the bytes (also with DICOM's '^' written as a space or ', ')."""
    return [text for text in PATIENT_TEXTS
            if any(variant.encode() in data for variant in {text, text.replace("^", " "), text.replace("^", ", ")})]


class DicomToPrintBatchTest(unittest.TestCase):
    """One input root, converted once by the process pool and once more to resume (in setUpClass, as the tests
    look at both); the Dask cluster and the interruption convert it again into folders of their own."""

    @classmethod
    def setUpClass(cls):
        if isSlicerApplication():
            raise unittest.SkipTest("the batch command is for plain Python installs, not Slicer's Python")
        cls.root = tempfile.mkdtemp(prefix="dicomtoprint-batch-")
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.input, cls.output = os.path.join(cls.root, "input"), os.path.join(cls.root, "output")
        cls.folders = writeStudies(cls.input)
        cls.ids = {name: expectedId(folder) for name, folder in cls.folders.items()}
        cls.settings = os.path.join(cls.root, "settings.json")
        with open(cls.settings, "w") as f:
            json.dump(SETTINGS, f)
        cls.first = runCommand(cls.input, cls.output, "--config", cls.settings)
        cls.firstRows = readSummary(cls.output)
        cls.firstFiles = {name: readBytes(os.path.join(cls.output, name)) for name in os.listdir(cls.output)}
        cls.firstWritten = {name: os.stat(os.path.join(cls.output, name)).st_mtime_ns for name in cls.firstFiles}
        cls.second = runCommand(cls.input, cls.output, "--config", cls.settings)
        cls.secondRows = readSummary(cls.output)

    def rowsById(self, rows) -> dict:
        byId = {row["series"]: row for row in rows}
        self.assertEqual(len(byId), len(rows))
        return byId

    def test_poolRunConvertsTheGoodSeriesAndReportsTheBrokenOnes(self):
        code, out, err, _ = self.first
        self.assertEqual(code, 1, err)
        self.assertEqual(out, f"6 series: 3 done, 1 skipped, 2 failed; summary: {self.output}/summary.csv\n")
        rows, ids = self.rowsById(self.firstRows), self.ids
        self.assertEqual(set(rows), set(ids.values()))
        twoparts = "DicomToPrint phantom twoparts"
        expected = {"knee": ("Knee [removed]", "36", "done"), "shell": ("DicomToPrint phantom shell", "40", "done"),
                    "hip": (twoparts, "36", "done"), "conflict": (twoparts, "13", "failed"),  # 12 and CONFLICT
                    "truncated": (twoparts, "11", "failed"),  # the 12th is the damaged file
                    "scout": (twoparts, "1", "skipped")}
        for name, (description, slices, status) in expected.items():
            row = rows[ids[name]]
            self.assertEqual((row["modality"], row["description"], row["slices"], row["status"]),
                             ("CT", description, slices, status), name)
        for name in ("knee", "shell", "hip"):
            row = rows[ids[name]]
            with open(os.path.join(self.output, f"{ids[name]}.json")) as f:
                report = json.load(f)
            triangles = stlTriangles(os.path.join(self.output, f"{ids[name]}.stl"))
            self.assertEqual(int(row["triangles"]), triangles)
            self.assertEqual(report["validation"]["triangles"], triangles)
            self.assertLessEqual(triangles, 20000)
            self.assertEqual((row["printable"], row["reasons"], row["error"]), ("yes", "", ""))
            self.assertGreater(float(row["time_s"]), 0.0)
            # the settings file's values, and the series chosen by its UID, are what the report says was used
            self.assertEqual((report["parameters"]["targetTriangles"], report["parameters"]["writePreview"]),
                             (20000, False))
            self.assertEqual(batch.seriesId(report["parameters"]["series"]), ids[name])
        self.assertTrue(19900 <= int(rows[ids["shell"]]["triangles"]) <= 20000)  # decimated to the target
        # an STL and a report per good series, the summary, nothing else (no previews, no temporary files)
        self.assertEqual(sorted(self.firstFiles), sorted([f"{ids[n]}.{ext}" for n in ("knee", "shell", "hip")
                                                          for ext in ("stl", "json")] + ["summary.csv"]))

    def test_brokenSeriesFailWithClearErrorsNamingNoPath(self):
        rows = self.rowsById(self.firstRows)
        conflict, truncated, scout = (rows[self.ids[n]] for n in ("conflict", "truncated", "scout"))
        self.assertRegex(conflict["error"], r"^<series folder>/CONFLICT: same slice position as <series folder>/"
                                            r"[0-9A-F]{8} but different pixels; the series has conflicting duplicate "
                                            r"slices$")
        self.assertRegex(truncated["error"], r"^<series folder>/[0-9A-F]{8}: truncated: the pixel data should end at "
                                             r"byte (\d+) but the file has \d+ bytes; remove it or export the series "
                                             r"again$")
        end, size = map(int, re.findall(r"\d+", truncated["error"].split(": ", 1)[1])[:2])
        self.assertEqual(size, end // 2)  # the file was cut to half (the pixel data runs to its end)
        self.assertEqual(scout["error"], "not a volume (1 image(s) without two or more slice positions and an "
                                         "orientation); nothing to convert")
        for row in (conflict, truncated, scout):
            self.assertEqual((row["triangles"], row["printable"], row["reasons"]), ("", "", ""))
        _, _, err, _ = self.first
        self.assertIn("1 damaged file(s) under <input> could not be attributed to any series and were left out "
                      "(1 empty file); their paths are not shown", err)
        lines = [line for line in err.splitlines() if line.startswith("[")]
        self.assertEqual(len(lines), 6, err)
        for name, status in (("knee", "done"), ("conflict", "failed"), ("truncated", "failed"), ("scout", "skipped")):
            self.assertEqual(sum(f"] {self.ids[name]} {status} " in line for line in lines), 1, (name, err))
        self.assertRegex(err, rf"\] {self.ids['shell']} done \d+\.\d s\n")

    def test_noPatientDataInTheOutputsOrOnTheTerminal(self):
        # every file either run left (the first run's, and the second run's summary), by name and by content
        files = {**self.firstFiles, "summary.csv (second run)": readBytes(os.path.join(self.output, "summary.csv"))}
        for name, data in files.items():
            self.assertEqual(patientTextsIn(name.encode()), [], name)
            self.assertEqual(patientTextsIn(data), [], name)
        for _, out, err, _ in (self.first, self.second):
            self.assertEqual(patientTextsIn((out + err).encode()), [])
            self.assertNotIn(self.input, out + err)
        # the check itself sees them: the names are in the input's folders and headers
        knee = self.folders["knee"]
        self.assertEqual(patientTextsIn(knee.encode()), ["DOE_JOHN", "19700101"])
        header = readBytes(os.path.join(knee, os.listdir(knee)[0]))[:2000]
        self.assertEqual(patientTextsIn(header), ["19700101", "Doe^John", "JD-19700101"])

    def test_secondRunSkipsWhatFinishedAndRetriesWhatFailed(self):
        code, out, err, _ = self.second
        self.assertEqual(code, 1, err)
        self.assertEqual(out, f"6 series: 0 done, 4 skipped, 2 failed; summary: {self.output}/summary.csv\n")
        first, second = self.rowsById(self.firstRows), self.rowsById(self.secondRows)
        self.assertEqual(list(second), list(first))  # same order: as found
        for name in ("knee", "shell", "hip"):
            identifier = self.ids[name]
            self.assertEqual(second[identifier]["status"], "skipped")
            self.assertIn(f"] {identifier} skipped (finished earlier)\n", err)
            for column in ("modality", "description", "slices", "triangles", "printable", "reasons", "error"):
                self.assertEqual(second[identifier][column], first[identifier][column], (name, column))
            with open(os.path.join(self.output, f"{identifier}.json")) as f:
                recorded = json.load(f)["timingsSeconds"]["total"]
            self.assertEqual(second[identifier]["time_s"], f"{recorded:.1f}")  # read back from the report
            with self.subTest(name=name):  # not converted again
                self.assertEqual(readBytes(os.path.join(self.output, f"{identifier}.stl")),
                                 self.firstFiles[f"{identifier}.stl"])
        for name in ("conflict", "truncated", "scout"):  # the same rows but for the time taken
            identifier = self.ids[name]
            self.assertEqual(second[identifier], {**first[identifier], "time_s": second[identifier]["time_s"]})
        self.assertRegex(err, rf"\] {self.ids['conflict']} failed \d+\.\d s: <series folder>/CONFLICT")  # ran again
        # what finished was not written again (its files' modification times, not the wall clock, which another
        # process on the machine can stretch)
        for name in ("knee", "shell", "hip"):
            written = sorted(f for f in self.firstWritten if f.startswith(self.ids[name] + "."))
            self.assertEqual([os.path.splitext(f)[1] for f in written], [".json", ".stl"])
            for file in written:
                self.assertEqual(os.stat(os.path.join(self.output, file)).st_mtime_ns, self.firstWritten[file], file)

    def test_unfinishedOutputsAreReplacedAndOtherSettingsRefused(self):
        discovery = batch.discoverSeries(self.input)
        self.assertEqual(discovery.filesSkipped, 0)
        self.assertEqual(len(discovery.unattributed), 1)
        parameters = batch.loadSettings(self.settings)
        plan = batch.planBatch(discovery, self.output, parameters)
        self.assertEqual(plan.jobs[0]["folder"], self.folders["conflict"])  # the deepest folder with its files
        self.assertEqual([job["id"] for job in plan.jobs], [self.ids["conflict"]])
        # an interrupted run wrote the STL but not the report: the series is converted again, replacing the STL
        unfinished = testing.temporaryFolder(self)
        identifier = self.ids["shell"]
        with open(os.path.join(unfinished, f"{identifier}.stl"), "wb") as f:
            f.write(self.firstFiles[f"{identifier}.stl"][:1000])
        plan = batch.planBatch(discovery, unfinished, parameters)
        job = next(job for job in plan.jobs if job["id"] == identifier)
        self.assertEqual(len(plan.jobs), 4)
        self.assertEqual((job["outputStl"], job["parameters"]["overwrite"]),
                         (os.path.join(unfinished, f"{identifier}.stl"), True))
        self.assertEqual(job["folder"], self.folders["shell"])
        # models finished with other settings are not passed off as this batch's
        plan = batch.planBatch(discovery, self.output, DicomToPrintParameters(targetTriangles=30000,
                                                                              writePreview=False))
        row = plan.rows[identifier]
        self.assertEqual(row["status"], "failed")
        self.assertEqual(row["error"], f"finished earlier with other settings (targetTriangles 20000 -> 30000); use a "
                                       f"new output folder, or remove {identifier}.* to convert it again")

    def test_interruptedBatchLeavesAValidSummary(self):
        output = testing.temporaryFolder(self)
        lines = []

        def log(line):
            lines.append(line)
            if line.startswith("[3/6]"):  # the first series a worker finished
                raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            batch.runBatch(self.input, output, batch.loadSettings(self.settings), workers=1, log=log)
        rows = self.rowsById(readSummary(output))
        # the two decided before converting, and the largest series, which the single worker converts first
        self.assertEqual({identifier: row["status"] for identifier, row in rows.items()},
                         {self.ids["truncated"]: "failed", self.ids["scout"]: "skipped", self.ids["shell"]: "done"})
        self.assertEqual(rows[self.ids["shell"]]["triangles"], self.rowsById(self.firstRows)[self.ids["shell"]]
                         ["triangles"])
        self.assertEqual([name for name in os.listdir(output) if name.startswith(".")], [])

    def test_daskClusterMakesTheSameRowsAndBytes(self):
        try:
            from distributed import LocalCluster
        except ImportError:
            self.skipTest("dask and distributed are not installed (pip install '.[batch]')")
        output = testing.temporaryFolder(self)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        self.addCleanup(cluster.close)
        code, out, err, _ = runCommand(self.input, output, "--config", self.settings, "--scheduler",
                                       cluster.scheduler_address)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, f"6 series: 3 done, 1 skipped, 2 failed; summary: {output}/summary.csv\n")

        def withoutTimes(rows):
            return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]

        self.assertEqual(withoutTimes(readSummary(output)), withoutTimes(self.firstRows))
        stls = sorted(name for name in self.firstFiles if name.endswith(".stl"))
        self.assertEqual(sorted(name for name in os.listdir(output) if name.endswith(".stl")), stls)
        for name in stls:
            with self.subTest(stl=name):
                self.assertEqual(readBytes(os.path.join(output, name)), self.firstFiles[name])

    def test_settingsAndUsageErrors(self):
        folder = testing.temporaryFolder(self)
        output = os.path.join(folder, "never")
        cases = [({"targetTriangles": 1000, "smoothnes": 2, "colour": "red"},
                  r"unknown setting\(s\) colour, smoothnes; known settings: .*targetTriangles"),
                 ({"series": "1.2.3"}, "'series' cannot be set for a batch \\(the batch converts every series"),
                 ({"targetTriangles": "many"}, 'targetTriangles must be a whole number \\(got "many"\\)'),
                 ({"writePreview": 1}, "writePreview must be true or false \\(got 1\\)"),
                 ({"targetReduction": 1.5}, "targetReduction: 1.5 is out of range \\(0 to 0.999\\)"),
                 ({"preset": "CT bones"}, "Unknown preset 'CT bones'; choose one of CT bone, ")]
        for index, (settings, message) in enumerate(cases):
            path = os.path.join(folder, f"settings{index}.json")
            with open(path, "w") as f:
                json.dump(settings, f)
            with self.subTest(settings=settings):
                code, out, err = runCli("batch", self.input, output, "--config", path)
                self.assertEqual((code, out), (1, ""))
                self.assertRegex(err, f"^dicomtoprint: error: {re.escape(path)}: {message}")
        with open(os.path.join(folder, "list.json"), "w") as f:
            f.write("[1, 2]")
        code, _, err = runCli("batch", self.input, output, "--config", os.path.join(folder, "list.json"))
        self.assertEqual(code, 1)
        self.assertIn("list.json: must be a JSON object of settings", err)
        self.assertFalse(os.path.exists(output))  # nothing ran
        for argv, message in ((["batch", self.input], "the following arguments are required: OUTPUT_ROOT"),
                              (["batch", self.input, output, "--workers", "0"], "--workers must be at least 1"),
                              (["batch", self.input, output, "--workers", "2", "--scheduler", "tcp://x:1"],
                               "not allowed with argument")):
            code, _, err = runCli(*argv)
            self.assertEqual(code, 2, err)
            self.assertIn(message, err)
        code, _, err = runCli("batch", os.path.join(folder, "missing"), output)
        self.assertEqual(code, 1)
        self.assertIn("missing: not a folder", err)
        self.assertFalse(os.path.exists(output))


if __name__ == "__main__":
    unittest.main()
