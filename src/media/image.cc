// Image decoding with libpng, libjpeg(-turbo) and libwebp, matching PIL's open + exif_transpose
// + convert("RGB") as transformers uses them.
//
// libpng and libjpeg report fatal errors by longjmp. Each decoder therefore runs in a C-style
// function that keeps every value it changes after setjmp in a plain struct, holds no object
// with a destructor, and frees what it allocated on the error path; the C++ caller turns the
// struct's error into a Status.
#include "media/image.h"

#include <sys/stat.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#if GEMMA4_HAVE_IMAGE_CODECS
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#endif

namespace gemma4::media {
namespace {

std::string SizeText(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

#if GEMMA4_HAVE_IMAGE_CODECS

// ---------------------------------------------------------------------------------------------
// EXIF orientation (TIFF IFD0 tag 0x0112).

uint32_t ReadU16(const uint8_t* p, bool le) {
  return le ? (p[0] | (p[1] << 8)) : ((p[0] << 8) | p[1]);
}
uint32_t ReadU32(const uint8_t* p, bool le) {
  return le ? (uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
               (uint32_t{p[3]} << 24))
            : ((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) |
               uint32_t{p[3]});
}

// Orientation 1..8 from a TIFF block (optionally after "Exif\0\0" when strip_prefix); 1 when
// absent or unreadable. Plain C: also called inside the libjpeg decoder.
int ExifOrientation(const uint8_t* d, size_t n, bool strip_prefix) {
  if (strip_prefix && n >= 6 && std::memcmp(d, "Exif\0\0", 6) == 0) {
    d += 6;
    n -= 6;
  }
  if (n < 8) return 1;
  bool le;
  if (d[0] == 'I' && d[1] == 'I') {
    le = true;
  } else if (d[0] == 'M' && d[1] == 'M') {
    le = false;
  } else {
    return 1;
  }
  if (ReadU16(d + 2, le) != 42) return 1;
  const uint32_t ifd = ReadU32(d + 4, le);
  if (ifd > n || n - ifd < 2) return 1;
  const uint32_t count = ReadU16(d + ifd, le);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t off = size_t{ifd} + 2 + size_t{i} * 12;
    if (off + 12 > n) return 1;
    const uint8_t* e = d + off;
    if (ReadU16(e, le) != 0x0112) continue;
    const uint32_t type = ReadU16(e + 2, le);
    uint32_t v = 0;
    if (type == 3) {
      v = ReadU16(e + 8, le);
    } else if (type == 4) {
      v = ReadU32(e + 8, le);
    } else {
      return 1;
    }
    return (v >= 1 && v <= 8) ? static_cast<int>(v) : 1;
  }
  return 1;
}

// PIL.ImageOps.exif_transpose: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM,
// 5 TRANSPOSE, 6 ROTATE_270 (clockwise 90), 7 TRANSVERSE, 8 ROTATE_90 (counterclockwise 90).
RgbImage ApplyOrientation(RgbImage in, int orientation) {
  if (orientation <= 1 || orientation > 8) return in;
  const int w = in.width, h = in.height;
  const bool swap = orientation >= 5;
  RgbImage out;
  out.width = swap ? h : w;
  out.height = swap ? w : h;
  out.pixels.resize(in.pixels.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2:
          sx = w - 1 - x;
          sy = y;
          break;
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;
        case 4:
          sx = x;
          sy = h - 1 - y;
          break;
        case 5:
          sx = y;
          sy = x;
          break;
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;
      }
      const uint8_t* s = &in.pixels[(static_cast<size_t>(sy) * w + sx) * 3];
      uint8_t* d = &out.pixels[(static_cast<size_t>(y) * out.width + x) * 3];
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  return out;
}

enum DecodeError { kDecodeOk = 0, kDecodeCorrupt, kDecodeTooLarge, kDecodeNoMemory };

// Raw decoder output, 8 bits per sample except 16-bit gray PNG (PIL "I;16": clipped to 255).
struct RawImage {
  uint8_t* pixels;  // malloc'd; rows of width * channels * bytes_per_sample
  uint32_t width;
  uint32_t height;
  int channels;  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA or (JPEG) Adobe-inverted CMYK
  int bytes_per_sample;
  int cmyk;
  int orientation;
  int error;
  char message[JMSG_LENGTH_MAX + 64];
};

bool SizeAllowed(uint32_t w, uint32_t h) {
  return w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide &&
         int64_t{w} * int64_t{h} <= kMaxImagePixels;
}

// ---- PNG -------------------------------------------------------------------------------------

struct PngJob {
  const uint8_t* data;
  size_t size;
  size_t pos;
  png_bytep* rows;
  RawImage* out;
};

void PngErrorFn(png_structp png, png_const_charp msg) {
  PngJob* job = static_cast<PngJob*>(png_get_error_ptr(png));
  if (job->out->error == kDecodeOk) {
    job->out->error = kDecodeCorrupt;
    std::snprintf(job->out->message, sizeof(job->out->message), "%s", msg);
  }
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp, png_const_charp) {}

void PngReadFn(png_structp png, png_bytep dst, png_size_t n) {
  PngJob* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > job->size - job->pos) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(dst, job->data + job->pos, n);
  job->pos += n;
}

void DecodePngC(PngJob* job) {
  RawImage* out = job->out;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, PngErrorFn, PngWarningFn);
  if (png == nullptr) {
    out->error = kDecodeNoMemory;
    return;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    out->error = kDecodeNoMemory;
    return;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::free(job->rows);
    job->rows = nullptr;
    std::free(out->pixels);
    out->pixels = nullptr;
    if (out->error == kDecodeOk) out->error = kDecodeCorrupt;
    return;
  }
  png_set_read_fn(png, job, PngReadFn);
  // libpng's own limit on width/height stays at its default (1e6); SizeAllowed below refuses
  // anything over ours before a row is allocated.
  png_set_chunk_malloc_max(png, 16u << 20);
  png_read_info(png, info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, nullptr, nullptr);
  out->width = width;
  out->height = height;
  if (!SizeAllowed(width, height)) {
    out->error = kDecodeTooLarge;
    png_longjmp(png, 1);
  }
  // PIL: palettes expand to RGB, gray below 8 bits scales up (1-bit: 0/255), 16-bit gray is
  // "I;16" (kept; clipped later), other 16-bit modes keep the high byte. tRNS may expand to an
  // alpha channel, which is dropped like every alpha.
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16 && color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
  if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->channels = png_get_channels(png, info);
  out->bytes_per_sample = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  const size_t rowbytes = png_get_rowbytes(png, info);
  if (out->channels < 1 || out->channels > 4 ||
      rowbytes != size_t{width} * out->channels * out->bytes_per_sample) {
    out->error = kDecodeCorrupt;
    std::snprintf(out->message, sizeof(out->message), "unsupported PNG pixel layout");
    png_longjmp(png, 1);
  }
  out->pixels = static_cast<uint8_t*>(std::malloc(rowbytes * height));
  job->rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * height));
  if (out->pixels == nullptr || job->rows == nullptr) {
    out->error = kDecodeNoMemory;
    png_longjmp(png, 1);
  }
  for (png_uint_32 y = 0; y < height; ++y) job->rows[y] = out->pixels + rowbytes * y;
  png_read_image(png, job->rows);
  png_destroy_read_struct(&png, &info, nullptr);
  std::free(job->rows);
  job->rows = nullptr;
}

// eXIf chunk, wherever it is (PIL reads chunks after IDAT too). No CRC check: informational.
int PngOrientation(const uint8_t* d, size_t n) {
  size_t pos = 8;
  while (pos + 12 <= n) {
    const uint32_t len = ReadU32(d + pos, false);
    if (len > n - pos - 12) return 1;
    if (std::memcmp(d + pos + 4, "eXIf", 4) == 0) return ExifOrientation(d + pos + 8, len, false);
    if (std::memcmp(d + pos + 4, "IEND", 4) == 0) return 1;
    pos += size_t{len} + 12;
  }
  return 1;
}

// ---- JPEG ------------------------------------------------------------------------------------

struct JpegErrorMgr {
  jpeg_error_mgr pub;
  jmp_buf jump;
  RawImage* out;
};

void JpegErrorExit(j_common_ptr cinfo) {
  JpegErrorMgr* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
  if (err->out->error == kDecodeOk) {
    err->out->error = kDecodeCorrupt;
    (*cinfo->err->format_message)(cinfo, err->out->message);
  }
  std::longjmp(err->jump, 1);
}

// Warnings are ignored as PIL does, except a premature end of data: PIL refuses truncated
// images ("image file is truncated") where libjpeg would pad them with gray.
void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    JpegErrorMgr* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
    err->out->error = kDecodeCorrupt;
    std::snprintf(err->out->message, sizeof(err->out->message),
                  "premature end of JPEG data (truncated file)");
    std::longjmp(err->jump, 1);
  }
}

// Bounds the work a hostile progressive file can cause (libjpeg-turbo's TurboJPEG uses a
// scan limit the same way).
void JpegProgress(j_common_ptr cinfo) {
  if (cinfo->is_decompressor) {
    j_decompress_ptr d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->input_scan_number > 1000) {
      JpegErrorMgr* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
      err->out->error = kDecodeCorrupt;
      std::snprintf(err->out->message, sizeof(err->out->message),
                    "progressive JPEG with more than 1000 scans");
      std::longjmp(err->jump, 1);
    }
  }
}

struct JpegJob {
  jpeg_decompress_struct cinfo;
  JpegErrorMgr err;
  jpeg_progress_mgr progress;
  const uint8_t* data;
  size_t size;
  RawImage* out;
};

void DecodeJpegC(JpegJob* job) {
  RawImage* out = job->out;
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = JpegErrorExit;
  job->err.pub.emit_message = JpegEmitMessage;
  job->err.out = out;
  if (setjmp(job->err.jump)) {
    jpeg_destroy_decompress(&job->cinfo);
    std::free(out->pixels);
    out->pixels = nullptr;
    if (out->error == kDecodeOk) out->error = kDecodeCorrupt;
    return;
  }
  jpeg_create_decompress(&job->cinfo);
  job->progress.progress_monitor = JpegProgress;
  job->cinfo.progress = &job->progress;
  jpeg_mem_src(&job->cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_save_markers(&job->cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&job->cinfo, TRUE);
  out->width = job->cinfo.image_width;
  out->height = job->cinfo.image_height;
  if (!SizeAllowed(out->width, out->height)) {
    out->error = kDecodeTooLarge;
    std::longjmp(job->err.jump, 1);
  }
  // PIL: the first APP1 Exif segment.
  for (jpeg_saved_marker_ptr m = job->cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
        std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      out->orientation = ExifOrientation(m->data, m->data_length, true);
      break;
    }
  }
  // libjpeg defaults (ISLOW DCT, fancy upsampling) as PIL uses them.
  switch (job->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
      job->cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      job->cinfo.out_color_space = JCS_CMYK;
      out->cmyk = 1;
      break;
    default:
      job->cinfo.out_color_space = JCS_RGB;
      break;
  }
  jpeg_start_decompress(&job->cinfo);
  out->channels = job->cinfo.output_components;
  out->bytes_per_sample = 1;
  if (out->channels != (out->cmyk ? 4 : (job->cinfo.out_color_space == JCS_GRAYSCALE ? 1 : 3)) ||
      job->cinfo.output_width != out->width || job->cinfo.output_height != out->height) {
    out->error = kDecodeCorrupt;
    std::snprintf(out->message, sizeof(out->message), "unexpected JPEG output layout");
    std::longjmp(job->err.jump, 1);
  }
  const size_t stride = size_t{out->width} * out->channels;
  out->pixels = static_cast<uint8_t*>(std::malloc(stride * out->height));
  if (out->pixels == nullptr) {
    out->error = kDecodeNoMemory;
    std::longjmp(job->err.jump, 1);
  }
  while (job->cinfo.output_scanline < job->cinfo.output_height) {
    JSAMPROW row = out->pixels + stride * job->cinfo.output_scanline;
    if (jpeg_read_scanlines(&job->cinfo, &row, 1) != 1) {
      out->error = kDecodeCorrupt;
      std::snprintf(out->message, sizeof(out->message), "JPEG decoder stalled");
      std::longjmp(job->err.jump, 1);
    }
  }
  jpeg_destroy_decompress(&job->cinfo);
}

// ---- Conversion to RGB ------------------------------------------------------------------------

// PIL's Convert.c cmyk2rgb after the "CMYK;I" (Adobe inverted) unpacking.
inline uint8_t CmykChannel(int c, int nk) {
  const int tmp = c * nk + 128;
  const int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(std::clamp(v, 0, 255));
}

StatusOr<RgbImage> RawToRgb(const RawImage& raw) {
  RgbImage img;
  img.width = static_cast<int>(raw.width);
  img.height = static_cast<int>(raw.height);
  const size_t n = size_t{raw.width} * raw.height;
  img.pixels.resize(n * 3);
  const uint8_t* s = raw.pixels;
  uint8_t* d = img.pixels.data();
  if (raw.bytes_per_sample == 2) {  // 16-bit gray, big-endian: PIL clips I;16 to 255
    for (size_t i = 0; i < n; ++i) {
      const int v = (s[2 * i] << 8) | s[2 * i + 1];
      d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = static_cast<uint8_t>(std::min(v, 255));
    }
    return img;
  }
  if (raw.cmyk) {
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = s + 4 * i;
      const int nk = p[3];  // 255 - K with K = 255 - raw
      d[3 * i + 0] = CmykChannel(255 - p[0], nk);
      d[3 * i + 1] = CmykChannel(255 - p[1], nk);
      d[3 * i + 2] = CmykChannel(255 - p[2], nk);
    }
    return img;
  }
  return ImageFromPixels(s, img.width, img.height, raw.channels,
                         static_cast<int64_t>(raw.width) * raw.channels);
}

Status RawError(const RawImage& raw, const char* format, const std::string& source) {
  switch (raw.error) {
    case kDecodeTooLarge:
      return InvalidArgumentError(
          source + ": " + format + " image of " + SizeText(raw.width, raw.height) +
          " pixels is empty or over the limit (each side <= " + std::to_string(kMaxImageSide) +
          ", " + std::to_string(kMaxImagePixels) + " pixels in all)");
    case kDecodeNoMemory:
      return ResourceExhaustedError(source + ": out of memory decoding " + format);
    default:
      return DataLossError(source + ": corrupt " + format +
                           " data: " + (raw.message[0] ? raw.message : "decoder error"));
  }
}

struct RawHolder {  // frees the decoder's buffer on every path of the C++ caller
  RawImage raw{};
  ~RawHolder() { std::free(raw.pixels); }
};

StatusOr<RgbImage> DecodePng(std::string_view bytes, const std::string& source) {
  RawHolder h;
  h.raw.orientation = 1;
  PngJob job{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 0, nullptr, &h.raw};
  DecodePngC(&job);
  if (h.raw.error != kDecodeOk) return RawError(h.raw, "PNG", source);
  GEMMA4_ASSIGN_OR_RETURN(RgbImage img, RawToRgb(h.raw));
  return ApplyOrientation(std::move(img), PngOrientation(job.data, job.size));
}

StatusOr<RgbImage> DecodeJpeg(std::string_view bytes, const std::string& source) {
  RawHolder h;
  h.raw.orientation = 1;
  JpegJob* job = new JpegJob();  // large; value-initialized POD
  job->data = reinterpret_cast<const uint8_t*>(bytes.data());
  job->size = bytes.size();
  job->out = &h.raw;
  DecodeJpegC(job);
  delete job;
  if (h.raw.error != kDecodeOk) return RawError(h.raw, "JPEG", source);
  GEMMA4_ASSIGN_OR_RETURN(RgbImage img, RawToRgb(h.raw));
  return ApplyOrientation(std::move(img), h.raw.orientation);
}

// ---- WebP ------------------------------------------------------------------------------------

int WebpOrientation(const uint8_t* d, size_t n) {
  if (n < 12) return 1;
  size_t pos = 12;
  while (pos + 8 <= n) {
    const uint32_t len = ReadU32(d + pos + 4, true);
    if (len > n - pos - 8) return 1;
    if (std::memcmp(d + pos, "EXIF", 4) == 0) return ExifOrientation(d + pos + 8, len, true);
    pos += 8 + size_t{len} + (len & 1);
  }
  return 1;
}

StatusOr<RgbImage> DecodeWebp(std::string_view bytes, const std::string& source) {
  const uint8_t* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  const VP8StatusCode st = WebPGetFeatures(data, bytes.size(), &features);
  if (st != VP8_STATUS_OK) {
    return DataLossError(source + ": corrupt WebP data (header status " + std::to_string(st) + ")");
  }
  GEMMA4_RETURN_IF_ERROR(CheckImageSize(features.width, features.height, source));
  if (features.has_animation) return UnimplementedError(source + ": animated WebP");
  RgbImage img;
  img.width = features.width;
  img.height = features.height;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  // RGB output equals the color channels of PIL's RGBA decode (alpha dropped, not composited).
  if (WebPDecodeRGBInto(data, bytes.size(), img.pixels.data(), img.pixels.size(), img.width * 3) ==
      nullptr) {
    return DataLossError(source + ": corrupt or truncated WebP data");
  }
  return ApplyOrientation(std::move(img), WebpOrientation(data, bytes.size()));
}

#endif  // GEMMA4_HAVE_IMAGE_CODECS

}  // namespace

bool HaveImageCodecs() { return GEMMA4_HAVE_IMAGE_CODECS != 0; }

Status CheckImageSize(int64_t width, int64_t height, const std::string& source) {
  if (width <= 0 || height <= 0 || width > kMaxImageSide || height > kMaxImageSide ||
      width * height > kMaxImagePixels) {
    return InvalidArgumentError(
        source + ": image of " + SizeText(width, height) +
        " pixels is empty or over the limit (each side <= " + std::to_string(kMaxImageSide) + ", " +
        std::to_string(kMaxImagePixels) + " pixels in all)");
  }
  return OkStatus();
}

StatusOr<RgbImage> ImageFromPixels(const uint8_t* data, int width, int height, int channels,
                                   int64_t stride_bytes) {
  const std::string source = "pixels";
  GEMMA4_RETURN_IF_ERROR(CheckImageSize(width, height, source));
  if (channels != 1 && channels != 2 && channels != 3 && channels != 4) {
    return InvalidArgumentError("pixels: " + std::to_string(channels) +
                                " channels (1 gray, 2 gray+alpha, 3 RGB or 4 RGBA expected)");
  }
  if (data == nullptr) return InvalidArgumentError("pixels: null data");
  if (stride_bytes < static_cast<int64_t>(width) * channels) {
    return InvalidArgumentError("pixels: row stride " + std::to_string(stride_bytes) +
                                " is less than width * channels = " +
                                std::to_string(static_cast<int64_t>(width) * channels));
  }
  try {
    RgbImage img;
    img.width = width;
    img.height = height;
    img.pixels.resize(static_cast<size_t>(width) * height * 3);
    uint8_t* d = img.pixels.data();
    for (int y = 0; y < height; ++y) {
      const uint8_t* s = data + static_cast<size_t>(y) * static_cast<size_t>(stride_bytes);
      switch (channels) {
        case 1:
        case 2:
          for (int x = 0; x < width; ++x, d += 3) d[0] = d[1] = d[2] = s[x * channels];
          break;
        case 3:
          std::memcpy(d, s, static_cast<size_t>(width) * 3);
          d += static_cast<size_t>(width) * 3;
          break;
        default:
          for (int x = 0; x < width; ++x, d += 3) {
            d[0] = s[4 * x];
            d[1] = s[4 * x + 1];
            d[2] = s[4 * x + 2];
          }
          break;
      }
    }
    return img;
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("pixels: out of memory");
  }
}

StatusOr<RgbImage> DecodeImage(std::string_view bytes, const std::string& source) {
  const auto starts = [&](const char* magic, size_t n, size_t at = 0) {
    return bytes.size() >= at + n && std::memcmp(bytes.data() + at, magic, n) == 0;
  };
  const bool png = starts("\x89PNG\r\n\x1a\n", 8);
  const bool jpeg = starts("\xff\xd8\xff", 3);
  const bool webp = starts("RIFF", 4) && starts("WEBP", 4, 8);
  if (!png && !jpeg && !webp) {
    return InvalidArgumentError(source + ": not a PNG, JPEG or WebP image (" +
                                std::to_string(bytes.size()) + " bytes, unknown signature)");
  }
#if GEMMA4_HAVE_IMAGE_CODECS
  try {
    if (png) return DecodePng(bytes, source);
    if (jpeg) return DecodeJpeg(bytes, source);
    return DecodeWebp(bytes, source);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(source + ": out of memory decoding the image");
  }
#else
  return UnimplementedError(source +
                            ": gemma4 was built without image codecs "
                            "(GEMMA4_WITH_IMAGE_CODECS=OFF)");
#endif
}

StatusOr<RgbImage> LoadImageFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return NotFoundError(path + ": no such file");
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(path + ": not a regular file");
  if (st.st_size > kMaxImageFileBytes) {
    return InvalidArgumentError(path + ": " + std::to_string(st.st_size) +
                                " bytes, over the image file limit of " +
                                std::to_string(kMaxImageFileBytes));
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return NotFoundError(path + ": cannot open");
  std::string bytes;
  try {
    bytes.resize(static_cast<size_t>(st.st_size));
  } catch (const std::bad_alloc&) {
    std::fclose(f);
    return ResourceExhaustedError(path + ": out of memory");
  }
  const size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  // A file that grew after stat is read up to the stat size; one that shrank is refused.
  std::fclose(f);
  if (got != bytes.size()) return DataLossError(path + ": short read");
  return DecodeImage(bytes, path);
}

}  // namespace gemma4::media
