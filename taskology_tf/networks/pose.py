"""An ego-motion network: two frames in, the rigid motion between them out.

This is the camera-motion part of depth-from-videos-in-the-wild's motion net (a strided
conv encoder over the channel-concatenated frame pair, global average, a 1x1 conv to 6 numbers).
The per-pixel object-motion field of that paper slots in later as another output of the
same task.
"""

from typing import Optional

import tf_keras as keras


def build_pose_net(
    height: Optional[int],
    width: Optional[int],
    base_filters: int = 16,
    levels: int = 5,
    rotation_scale: float = 0.01,
    translation_scale: float = 0.01,
    name: str = 'pose_net',
) -> keras.Model:
  """Builds a net mapping a frame pair to cam_b_from_cam_a as axis-angle rotation + translation.

  Args:
    height: frame height in pixels (None for any).
    width: frame width in pixels (None for any).
    base_filters: filters of the first strided conv, doubled per level (capped at 8x).
    levels: number of stride-2 convolutions.
    rotation_scale: multiplies the raw rotation output; small so training starts near identity.
    translation_scale: multiplies the raw translation output (metres).
    name: Keras model name.

  Returns:
    A tf_keras Model with inputs `image_a`, `image_b` (float32 [B, H, W, 3] in [0, 1]) and
    outputs `rotation` [B, 3] (axis-angle, radians) and `translation` [B, 3] (metres, camera
    frame of b), so that X_b = R(rotation) X_a + translation.
  """
  image_a = keras.Input(shape=(height, width, 3), name='image_a')
  image_b = keras.Input(shape=(height, width, 3), name='image_b')
  x = keras.layers.Concatenate(name=f'{name}_pair')([image_a, image_b])
  for level in range(levels):
    x = keras.layers.Conv2D(
        base_filters * 2 ** min(level, 3),
        3,
        strides=2,
        padding='same',
        activation='relu',
        name=f'{name}_conv{level}',
    )(x)
  x = keras.layers.GlobalAveragePooling2D(name=f'{name}_pool')(x)
  # Zero-initialised output: the net starts at the identity motion, which keeps the first
  # photometric gradients well behaved.
  motion = keras.layers.Dense(6, kernel_initializer='zeros', name=f'{name}_motion')(x)
  rotation = keras.layers.Lambda(lambda m: m[:, :3] * rotation_scale, name='rotation')(motion)
  translation = keras.layers.Lambda(lambda m: m[:, 3:] * translation_scale, name='translation')(
      motion
  )
  return keras.Model(
      [image_a, image_b], {'rotation': rotation, 'translation': translation}, name=name
  )
