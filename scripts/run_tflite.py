"""Runs .tflite files with whichever TFLite runtime this Python has; prints one JSON line of the results.

    <python> scripts/run_tflite.py Z.npy FILE.tflite [FILE.tflite ...]

For each file: load it, resize its input to Z's shape, run it on Z and save
the output beside it as FILE.tflite.out.npy; the JSON maps each file to
{"output": path} or {"error": message}, and "runtime" to the runtime's name
and version. Made to run in another virtual environment than tf_gkd's (e.g.
.venv-tflite-2.14, with tflite-runtime 2.14 and numpy < 2), so it imports
nothing of tf_gkd: tests/export_old_runtime_test.py and
benchmarks/export.py load exports there with it.
"""

import json
import sys

import numpy as np

try:
    import tflite_runtime
    from tflite_runtime.interpreter import Interpreter

    RUNTIME = f"tflite-runtime {tflite_runtime.__version__}"
except ImportError:  # LiteRT, tflite-runtime's successor.
    from ai_edge_litert.interpreter import Interpreter

    RUNTIME = "ai-edge-litert"


def run(path, z):
    interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, z.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, z)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def main(z_path, *paths):
    z = np.load(z_path)
    results = {"runtime": RUNTIME}
    for path in paths:
        try:
            output = path + ".out.npy"
            np.save(output, run(path, z))
            results[path] = {"output": output}
        except Exception as e:  # Whatever the runtime refuses the file with is the answer.
            results[path] = {"error": str(e).strip()}
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
