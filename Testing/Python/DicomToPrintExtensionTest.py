"""The extension as Slicer's build and catalog expect it, the README's commands, and the code style."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
MODULE = os.path.join(ROOT, "DicomToPrint")
LIBRARY = os.path.join(MODULE, "DicomToPrintLib")


def read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


class DicomToPrintExtensionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")) or not os.path.isdir(LIBRARY):
            raise unittest.SkipTest("runs in a source checkout (the extension's files are not installed)")

    def test_moduleCMakeListsEveryScript(self):
        cmake = read("DicomToPrint", "CMakeLists.txt")
        scripts = re.findall(r"^\s+(\S+\.py)\s*$", cmake, re.M)
        listed = {name.replace("${MODULE_NAME}", "DicomToPrint") for name in scripts}
        onDisk = {"DicomToPrint.py"} | {f"DicomToPrintLib/{name}" for name in os.listdir(LIBRARY)
                                        if name.endswith(".py")}
        self.assertEqual(listed, onDisk)
        self.assertIn("slicerMacroBuildScriptedModule(", cmake)
        self.assertIn("WITH_GENERIC_TESTS", cmake)
        self.assertIn("slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)", cmake)
        resources = re.findall(r"^\s+(Resources/\S+)\s*$", cmake, re.M)
        self.assertEqual(len(resources), 2)
        for resource in resources:
            self.assertTrue(os.path.isfile(os.path.join(MODULE, resource.replace("${MODULE_NAME}", "DicomToPrint"))))

    def test_extensionCMakeAndCatalogEntry(self):
        cmake = read("CMakeLists.txt")
        for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                         "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
            self.assertRegex(cmake, rf"set\({variable} \S")
        for line in ("find_package(Slicer REQUIRED)", "add_subdirectory(DicomToPrint)",
                     "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
            self.assertIn(line, cmake)
        entry = json.loads(read("DicomToPrint.json"))
        # Slicer's catalog entry schema v1.0.2: required keys, and no others than it defines
        self.assertTrue({"$schema", "category", "scm_url"} <= set(entry))
        allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                   "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
        self.assertEqual(set(entry) - allowed, set())
        self.assertIn("slicer-extension-catalog-entry-schema-v1.0.2.json", entry["$schema"])
        self.assertEqual(entry["category"], re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1))
        # the icon and screenshot URLs point to files of this repository (its main branch)
        urls = re.findall(r'set\(EXTENSION_(?:ICONURL|SCREENSHOTURLS) "([^"]+)"\)', cmake)
        self.assertEqual(len(urls), 2)
        for url in urls:
            path = re.fullmatch(r"https://raw\.githubusercontent\.com/dicomtoprint/SlicerDicomToPrint/main/(.+)", url)
            self.assertIsNotNone(path, url)
            with open(os.path.join(ROOT, *path.group(1).split("/")), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # contributors as Slicer asks: "Name (Organization)"
        self.assertRegex(re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1),
                         r"^[^,()]+ \([^()]+\)(, [^,()]+ \([^()]+\))*$")

    def test_libraryImportsNothingFromTheApplication(self):
        allowed = {"slicer", "vtk", "vtkmodules", "numpy", "SimpleITK", "pydicom", "DicomToPrintLib"}
        # optional (the "batch" and "3mf" extras; fast-simplification, which Slicer does not bundle and the
        # extension installs on first use; embreex, which has no wheel for every platform; threadpoolctl, which
        # only the command line's thread setting uses): only inside the function that needs them, so the library
        # loads without
        lazilyAllowed = {"dask", "distributed", "lib3mf", "fast_simplification", "embreex", "threadpoolctl"}
        for name in sorted(os.listdir(LIBRARY)):
            if not name.endswith(".py"):
                continue
            tree = ast.parse(read("DicomToPrint", "DicomToPrintLib", name))
            # module-level statements and function bodies apart: (node, inside a function)
            pending = [(node, False) for node in tree.body]
            while pending:
                node, inFunction = pending.pop()
                pending.extend((child, inFunction or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                       ast.Lambda)))
                               for child in ast.iter_child_nodes(node))
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    with self.subTest(file=name, module=module):
                        self.assertTrue(top in allowed or top in sys.stdlib_module_names
                                        or (inFunction and top in lazilyAllowed),
                                        f"{name} imports {module}" + ("" if inFunction else " at module level"))
                        self.assertNotIn(module, {"slicer.ScriptedLoadableModule", "slicer.util", "qt", "ctk"})

    def test_readmeTestCommandIsWhatCiRuns(self):
        readme = read("README.md")
        commands = re.findall(r"```(?:bash|sh)\n(.*?)\n```", readme, re.S)
        testCommand = next(c for c in commands if "pytest" in c)
        self.assertIn(testCommand.strip(), read(".ci", "run"))
        self.assertTrue(any("dicomtoprint sample" in c for c in commands))

    def test_supportedSlicerVersionsAreTheTestedOnes(self):
        """The package admits the slicer-core and pydicom versions CI runs the suite on, and the README says so."""
        pyproject, ci, readme = read("pyproject.toml"), read(".ci", "run"), read("README.md")
        self.assertEqual(re.search(r'"slicer-core([^"]+)"', pyproject).group(1), ">=5.12.4,<5.14")
        self.assertEqual(re.search(r'"pydicom([^"]+)"', pyproject).group(1), ">=2.4")
        self.assertIn('.venv-5.12/bin/pip install ".[test]" "slicer-core==5.12.4.0" "pydicom==2.4.4"', ci)
        self.assertIn(".venv-5.12/bin/python -m pytest", ci)
        for text in ("slicer-core 5.13.31053.0", "slicer-core 5.12.4.0", "pydicom 2.4.4", "5.10.0 and 5.12.3"):
            self.assertIn(text, readme)

    def test_codeStyle(self):
        ruff = shutil.which("ruff") or (os.path.join(os.path.dirname(sys.executable), "ruff")
                                        if os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff"))
                                        else None)
        if ruff is None:
            self.skipTest("ruff is not installed (pip install '.[test]')")
        completed = subprocess.run([ruff, "check", ROOT], capture_output=True, text=True, check=False)
        self.assertEqual(completed.returncode, 0, completed.stdout + completed.stderr)


if __name__ == "__main__":
    unittest.main()
