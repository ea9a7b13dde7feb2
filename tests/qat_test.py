"""Quantization-aware tuning for int8: the rounding simulated as the int8 file rounds, ranges, tuning."""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from generators import Z_DIM, generator, inputs  # (tests/generators.py)
from keras import layers

from tf_gkd import contract
from tf_gkd.export import exporter, qat, rewrite, runtime, tflite


def calibration(net):
    return tflite.calibration_batches(Z_DIM, None, contract.num_classes(net))


@pytest.mark.parametrize("num_classes, for_mobile", [(0, False), (3, False), (0, True)])
def test_the_int8_file_rounds_as_the_simulation(tmp_path, num_classes, for_mobile):
    net = generator("conv4", num_classes)
    # As gkd-export tunes it: rewritten, its transposed convolutions sub-pixel and full convolutions.
    tuned, stats = qat.fine_tune(rewrite.for_mobile(net) if for_mobile else net, calibration(net), steps=5)
    saved = str(tmp_path / "saved_model")
    tflite.write_saved_model(tuned.model, saved)
    path = tmp_path / "model_int8_qat.tflite"
    path.write_bytes(tflite.convert(saved, "int8_qat", Z_DIM, num_classes=num_classes))
    z = contract.latents(64, Z_DIM, 7)
    labels = contract.class_labels(64, num_classes) if num_classes else None
    simulated = np.asarray(tuned.model(contract.generator_inputs(net, z, labels), training=False))
    float_images = np.asarray(net(contract.generator_inputs(net, z, labels), training=False))
    int8_images = runtime.TFLiteGenerator(str(path))(z, labels)
    # The file's rounding is the simulated one, up to one output level (1/128) where integer and float
    # arithmetic round a value on the edge differently.
    levels = np.abs(int8_images - simulated) * 128
    assert np.mean(levels <= 1.01) >= 0.97
    assert np.abs(int8_images - simulated).mean() < np.abs(int8_images - float_images).mean()
    assert stats["steps"] == 5 and stats["l1_narrowed"] <= stats["l1_calibrated"]


def weight_scales(tflite_bytes):
    """{kernel shape: number of quantization scales} of the int8 kernels (4-D: convolutions) of a .tflite file."""
    interpreter = Interpreter(model_content=tflite_bytes)
    return {
        tuple(d["shape"]): len(d["quantization_parameters"]["scales"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) == 4
    }


def test_the_tuned_file_has_a_scale_per_convolution_output_channel_and_int8_one_per_kernel(tmp_path):
    net = rewrite.for_mobile(generator("conv4"))
    tuned, _ = qat.fine_tune(net, calibration(net), steps=0)
    files = {}
    for variant, model in (("int8_qat", tuned.model), ("int8", net)):
        saved = str(tmp_path / variant)
        tflite.write_saved_model(model, saved)
        files[variant] = weight_scales(tflite.convert(saved, variant, Z_DIM))
    assert files["int8_qat"] and files["int8_qat"].keys() == files["int8"].keys()
    # TFLite's convolution kernels are OHWI: one scale per output channel, the first axis.
    assert all(n == shape[0] for shape, n in files["int8_qat"].items())
    assert all(n == 1 for n in files["int8"].values())


def test_a_tanh_input_range_stops_where_int8_tanh_saturates():
    net = generator("conv4")
    # The last layer's logits reach far past saturation, as a student's background does.
    last = net.get_layer("up_28")
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 50, bias - 40])
    qa = qat.QuantizationAware(net)
    qa.calibrate(calibration(net))
    (logits,) = qa.tanh_inputs
    assert float(logits.min) == pytest.approx(-qat.TANH_SATURATION)
    images = qa.model(inputs(net), training=False)
    assert float(np.min(images)) == -1.0  # Saturated pixels still reach the end of the range.


def test_narrowed_ranges_round_a_trained_like_generator_better_than_min_and_max():
    net = generator("conv4")
    # One outlier channel widens a range, as in trained students.
    project = net.get_layer("project")
    kernel = project.get_weights()[0]
    kernel[:, 0] *= 30
    project.set_weights([kernel])
    qa = qat.QuantizationAware(net)
    batches = calibration(net)
    qa.calibrate(batches)
    x = inputs(net, 256, seed=11)  # Latents outside the calibration set.

    def error():
        return float(np.abs(np.asarray(qa.model(x, training=False)) - np.asarray(net(x, training=False))).mean())

    calibrated, widths = error(), [float(r.max - r.min) for r in qa.ranges()]
    qa.narrow_ranges(batches, net)
    assert error() < calibrated
    assert any(float(r.max - r.min) < width for r, width in zip(qa.ranges(), widths, strict=True))


def test_a_layer_it_cannot_round_is_named():
    z = keras.Input((Z_DIM,), name="z")
    x = layers.Dense(49)(z)
    x = layers.Reshape((7, 7, 1))(x)
    x = layers.Conv2DTranspose(1, 4, strides=4, padding="same")(x)
    x = layers.LayerNormalization(name="odd_norm")(x)
    net = keras.Model(z, layers.Activation("tanh")(x))
    with pytest.raises(qat.QATError, match="'odd_norm' \\(LayerNormalization\\)"):
        qat.QuantizationAware(net)


def test_tuning_that_rounds_worse_is_undone():
    net = generator("conv4")
    qa, stats = qat.fine_tune(net, calibration(net), steps=20, learning_rate=1.0)
    assert not stats["tuning_kept"] and stats["l1_after"] == stats["l1_narrowed"]
    again, _ = qat.fine_tune(net, calibration(net), steps=0)
    x = inputs(net)
    np.testing.assert_allclose(qa.model(x, training=False), again.model(x, training=False), atol=1e-6)


def test_a_negative_number_of_tuning_steps_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="qat_steps must be >= 0"):
        exporter.export_generator(generator("dense"), str(tmp_path / "export"), "tiny", qat_steps=-1)
    assert not (tmp_path / "export").exists()
