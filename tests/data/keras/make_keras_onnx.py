"""Writes keras_cnn.onnx / .npz and keras_ncf.onnx / .npz, the tf2onnx exports tests/test_onnx.py imports.

Not run by the tests (TensorFlow is not a dependency): run it in a venv of its own,
``pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0``, then ``python make_keras_onnx.py``.
The model: a Keras functional CNN on NHWC 8x8x3 images with ResNet blocks (BatchNorm, an identity
and a strided 1x1-projection shortcut, Keras's "same" padding at stride 2, which tf2onnx writes as
asymmetric pads) and a MobileNet-style tail (depthwise, ReLU6, hard-swish), global pooling and a
Dense head, seeded; the .npz holds a batch of inputs (x) and Keras's outputs for it (y). The
recommender: NCF with two int64 inputs (user, item), concatenated embeddings and an MLP (Keras's
Embedding wraps negative indices before its Gather, which tf2onnx writes as index arithmetic).
"""

import os

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

L = tf.keras.layers
here = os.path.dirname(os.path.abspath(__file__))
tf.keras.utils.set_random_seed(0)

inp = L.Input((8, 8, 3))
h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
shortcut = h
h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(h)))
h = L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(h))
h = L.ReLU()(L.Add()([h, shortcut]))
projection = L.Conv2D(16, 1, strides=2)(h)
h = L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same")(h))
h = L.ReLU()(L.Add()([h, projection]))
h = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(h))
h = L.Activation("hard_swish")(L.Conv2D(24, 1)(h))
out = L.Dense(10)(L.GlobalAveragePooling2D()(h))
model = tf.keras.Model(inp, out)
# BatchNorm statistics that are not the identity
for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
        rng = np.random.default_rng(len(layer.name))
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([gamma + rng.random(gamma.shape), beta + rng.standard_normal(beta.shape) * 0.1,
                           rng.standard_normal(mean.shape) * 0.1, rng.random(var.shape) + 0.5])

proto, _ = tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, 8, 8, 3), tf.float32,
                                                                            name="x"),), opset=17)
onnx.save(proto, os.path.join(here, "keras_cnn.onnx"))
x = np.random.default_rng(0).standard_normal((5, 8, 8, 3)).astype(np.float32)
np.savez(os.path.join(here, "keras_cnn.npz"), x=x, y=model(x).numpy())

tf.keras.utils.set_random_seed(1)
user, item = L.Input((), dtype="int64", name="user"), L.Input((), dtype="int64", name="item")
h = L.Concatenate()([L.Embedding(30, 8)(user), L.Embedding(40, 8)(item)])
out = L.Dense(1)(L.Dense(16, activation="relu")(h))
ncf = tf.keras.Model([user, item], out)
spec = (tf.TensorSpec((None,), tf.int64, name="user"), tf.TensorSpec((None,), tf.int64, name="item"))
proto, _ = tf2onnx.convert.from_keras(ncf, input_signature=spec, opset=17)
onnx.save(proto, os.path.join(here, "keras_ncf.onnx"))
rng = np.random.default_rng(1)
u, i = rng.integers(0, 30, 7).astype(np.int64), rng.integers(0, 40, 7).astype(np.int64)
np.savez(os.path.join(here, "keras_ncf.npz"), user=u, item=i, y=ncf([u, i]).numpy())
