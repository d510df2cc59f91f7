#include "base/tensor.h"

namespace gemma4 {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kF64:
      return "F64";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kF8E5M2:
      return "F8_E5M2";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ6_K:
      return "Q6_K";
    case DType::kQ4_0R:
      return "Q4_0R";
    case DType::kQ8_0R:
      return "Q8_0R";
    case DType::kQ4_0x16:
      return "Q4_0x16";
    case DType::kQ4_Kx16:
      return "Q4_Kx16";
    case DType::kQ6_Kx16:
      return "Q6_Kx16";
    case DType::kQ8_0x16:
      return "Q8_0x16";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ5_K:
      return "Q5_K";
    case DType::kQ5_Kx16:
      return "Q5_Kx16";
    case DType::kQ5_1:
      return "Q5_1";
    case DType::kIQ4_NL:
      return "IQ4_NL";
    case DType::kIQ4_NLx16:
      return "IQ4_NLx16";
    case DType::kMXFP4:
      return "MXFP4";
    case DType::kMXFP4x16:
      return "MXFP4x16";
    case DType::kIQ4_XS:
      return "IQ4_XS";
    case DType::kIQ4_XSx16:
      return "IQ4_XSx16";
    case DType::kQ3_K:
      return "Q3_K";
    case DType::kQ3_Kx16:
      return "Q3_Kx16";
    case DType::kQ4_1:
      return "Q4_1";
    case DType::kQ4_1x16:
      return "Q4_1x16";
    case DType::kQ5_1x16:
      return "Q5_1x16";
    case DType::kQ2_K:
      return "Q2_K";
    case DType::kQ2_Kx16:
      return "Q2_Kx16";
    case DType::kIQ2_XXS:
      return "IQ2_XXS";
    case DType::kIQ2_XS:
      return "IQ2_XS";
    case DType::kIQ2_S:
      return "IQ2_S";
    case DType::kIQ3_XXS:
      return "IQ3_XXS";
    case DType::kIQ3_S:
      return "IQ3_S";
    case DType::kIQ1_S:
      return "IQ1_S";
    case DType::kIQ1_M:
      return "IQ1_M";
  }
  return "?";
}

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    default:
      return 1;
  }
}

int64_t BlockElements(DType t) {
  switch (t) {
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_0R:
    case DType::kQ8_0R:
    case DType::kQ4_0x16:
    case DType::kQ8_0x16:
    case DType::kQ5_0:
    case DType::kQ4_1:
    case DType::kQ4_1x16:
    case DType::kQ5_1:
    case DType::kQ5_1x16:
    case DType::kIQ4_NL:
    case DType::kIQ4_NLx16:
    case DType::kMXFP4:
    case DType::kMXFP4x16:
      return 32;
    case DType::kQ3_K:
    case DType::kQ3_Kx16:
    case DType::kQ2_K:
    case DType::kQ2_Kx16:
    case DType::kQ4_K:
    case DType::kQ4_Kx16:
    case DType::kQ5_K:
    case DType::kQ5_Kx16:
    case DType::kQ6_K:
    case DType::kQ6_Kx16:
    case DType::kIQ4_XS:
    case DType::kIQ4_XSx16:
    case DType::kIQ2_XXS:
    case DType::kIQ2_XS:
    case DType::kIQ2_S:
    case DType::kIQ3_XXS:
    case DType::kIQ3_S:
    case DType::kIQ1_S:
    case DType::kIQ1_M:
      return 256;
    default:
      return 1;
  }
}

size_t BlockBytes(DType t) {
  switch (t) {
    case DType::kQ8_0:
    case DType::kQ8_0R:
    case DType::kQ8_0x16:
      return 34;  // f16 d + 32 x int8
    case DType::kQ4_0:
    case DType::kQ4_0R:
    case DType::kQ4_0x16:
      return 18;  // f16 d + 16 bytes of nibbles
    case DType::kQ5_0:
      return 22;  // f16 d + 4 bytes of fifth bits + 16 bytes of nibbles
    case DType::kQ4_1:
    case DType::kQ4_1x16:
      return 20;  // f16 d, f16 m + 16 bytes of nibbles
    case DType::kQ5_1:
    case DType::kQ5_1x16:
      return 24;  // f16 d, f16 m + 4 bytes of fifth bits + 16 bytes of nibbles
    case DType::kIQ4_NL:
    case DType::kIQ4_NLx16:
      return 18;  // f16 d + 16 bytes of nibbles
    case DType::kMXFP4:
    case DType::kMXFP4x16:
      return 17;  // E8M0 scale byte + 16 bytes of nibbles
    case DType::kIQ4_XS:
    case DType::kIQ4_XSx16:
      return 136;  // f16 d, u16 high scale bits, 4 bytes of low scale bits, 128 bytes of nibbles
    case DType::kQ3_K:
    case DType::kQ3_Kx16:
      return 110;  // 32 bytes of high bits, 64 bytes of low bit pairs, 12 bytes of scales, f16 d
    case DType::kQ2_K:
    case DType::kQ2_Kx16:
      return 84;  // 16 bytes of 4-bit scales/mins, 64 bytes of 2-bit values, f16 d, f16 dmin
    case DType::kQ4_K:
    case DType::kQ4_Kx16:
      return 144;  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
    case DType::kQ5_K:
    case DType::kQ5_Kx16:
      return 176;  // Q4_K's 144 bytes and 32 bytes of fifth bits
    case DType::kQ6_K:
    case DType::kQ6_Kx16:
      return 210;  // 128 bytes low bits, 64 bytes high bits, 16 int8 scales, f16 d
    case DType::kIQ2_XXS:
      return 66;  // f16 d, 64 bytes of grid indices, sign indices and scales
    case DType::kIQ2_XS:
      return 74;  // f16 d, 32 u16 grid and sign indices, 8 bytes of scales
    case DType::kIQ2_S:
      return 82;  // f16 d, 32 bytes of low index bits, 32 of signs, 8 of high bits, 8 of scales
    case DType::kIQ3_XXS:
      return 98;  // f16 d, 64 bytes of grid indices, 32 of sign indices and scales
    case DType::kIQ3_S:
      return 110;  // f16 d, 64 bytes of low index bits, 8 of high bits, 32 of signs, 4 of scales
    case DType::kIQ1_S:
      return 50;  // f16 d, 32 bytes of low index bits, 8 u16 of high bits, scale and shift sign
    case DType::kIQ1_M:
      return 56;  // 32 bytes of low index bits, 16 of high bits and shift signs, 8 of scales
    default:
      return DTypeSize(t);
  }
}

bool IsBlockType(DType t) { return BlockElements(t) > 1; }

bool IsInterleavedX16(DType t) {
  return t == DType::kQ4_0x16 || t == DType::kQ8_0x16 || t == DType::kQ2_Kx16 ||
         t == DType::kQ3_Kx16 || t == DType::kQ4_Kx16 || t == DType::kQ5_Kx16 ||
         t == DType::kQ6_Kx16 || t == DType::kIQ4_XSx16 || t == DType::kQ4_1x16 ||
         t == DType::kQ5_1x16 || t == DType::kIQ4_NLx16 || t == DType::kMXFP4x16;
}

bool IsCodebookType(DType t) {
  return t == DType::kIQ2_XXS || t == DType::kIQ2_XS || t == DType::kIQ2_S ||
         t == DType::kIQ3_XXS || t == DType::kIQ3_S;
}

bool IsOneBitCodebookType(DType t) { return t == DType::kIQ1_S || t == DType::kIQ1_M; }

uint64_t RowBytes(DType t, int64_t cols) {
  return static_cast<uint64_t>(cols / BlockElements(t)) * BlockBytes(t);
}

bool IsComputeType(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 ||
         t == DType::kQ4_0 || t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ4_K ||
         t == DType::kQ5_K || t == DType::kQ6_K || t == DType::kQ4_1 || t == DType::kQ5_1 ||
         t == DType::kIQ4_XS || t == DType::kIQ4_NL || t == DType::kMXFP4 || IsCodebookType(t) ||
         IsOneBitCodebookType(t) || t == DType::kQ4_0R || t == DType::kQ8_0R || IsInterleavedX16(t);
}

bool ConvertedAtLoad(DType t) { return t == DType::kQ5_0; }

DType ConvertedType(DType t) { return t == DType::kQ5_0 ? DType::kQ5_1 : t; }

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

TensorView TensorView::RowSlice(int64_t first, int64_t count) const {
  TensorView v = *this;
  const uint64_t row_bytes = RowBytes(dtype, cols());
  v.shape = {count, cols()};
  v.data = data + first * row_bytes;
  v.nbytes = count * row_bytes;
  v.file_offset = file_offset + first * row_bytes;
  return v;
}

}  // namespace gemma4
