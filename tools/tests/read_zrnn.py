"""Reads a zeronn model file (version 2) with the standard library and NumPy."""
import struct, sys, zlib
import numpy as np

KINDS = {1: "Affine", 2: "Relu", 3: "Sigmoid", 4: "SoftmaxWithLoss", 5: "BatchNorm",
         6: "Dropout", 7: "Convolution", 8: "Pooling"}

def read_zrnn(path):
    b = open(path, "rb").read()
    magic, version, elem, order, header_len, payload_len, crc_payload, crc_header, n = \
        struct.unpack_from("<4sHBBIIIIH", b, 0)
    assert magic == b"ZRNN" and version == 2 and elem == 1 and order == 1, "not a version 2 f32 model"
    assert len(b) == header_len + payload_len, "truncated"
    header = bytearray(b[:header_len]); header[20:24] = bytes(4)
    assert zlib.crc32(header) == crc_header and zlib.crc32(b[header_len:]) == crc_payload, "CRC"
    layers = []
    for i in range(n):
        kind, _, a, b_, c, d, e, f, g = struct.unpack_from("<HH7I", b, 32 + 32 * i)
        layers.append((KINDS[kind], (a, b_, c, d, e, f, g)))
    values = np.frombuffer(b, "<f4", offset=header_len)
    return layers, values

if __name__ == "__main__":
    layers, values = read_zrnn(sys.argv[1])
    for name, fields in layers:
        print(name, fields)
    print(len(values), "values")
