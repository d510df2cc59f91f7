// Image decoding and the processor's resize against transformers' own preprocessing
// (tests/fixtures/vision/reference.json, made by tools/reference/make_vision_fixtures.py):
// every fixture image decodes to its recorded size and resizes to exactly the bytes
// transformers fed the vision tower. Plus hostile and malformed input.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "media/image.h"
#include "media/resize.h"

namespace gemma4::media {
namespace {

const std::string kVisionDir = std::string(GEMMA4_FIXTURES_DIR) + "/vision";

std::string ReadOrDie(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : std::string();
}

struct FixtureImage {
  std::string name, file, resized;
  int64_t src_h = 0, src_w = 0, out_h = 0, out_w = 0;
};

std::vector<FixtureImage> LoadFixtureImages() {
  std::vector<FixtureImage> out;
  const std::string path = kVisionDir + "/reference.json";
  auto root = json::Parse(ReadOrDie(path), path);
  EXPECT_TRUE(root.ok()) << root.status().ToString();
  if (!root.ok() || root->Find("images") == nullptr) return out;
  for (const auto& [name, v] : root->Find("images")->as_object()) {
    FixtureImage f;
    f.name = name;
    f.file = v.Find("file")->as_string();
    f.resized = v.Find("resized")->as_string();
    const auto& ss = v.Find("source_size")->as_array();
    const auto& rs = v.Find("resized_size")->as_array();
    ss[0].GetInt64(&f.src_h);
    ss[1].GetInt64(&f.src_w);
    rs[0].GetInt64(&f.out_h);
    rs[1].GetInt64(&f.out_w);
    out.push_back(f);
  }
  return out;
}

TEST(MediaTest, FixturesResizeExactly) {
  if (!HaveImageCodecs()) GTEST_SKIP() << "built without image codecs";
  const auto images = LoadFixtureImages();
  ASSERT_EQ(images.size(), 10u);
  int exact = 0;
  for (const FixtureImage& f : images) {
    SCOPED_TRACE(f.name);
    auto src = LoadImageFile(kVisionDir + "/images/" + f.file);
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    EXPECT_EQ(src->height, f.src_h);
    EXPECT_EQ(src->width, f.src_w);
    auto want = LoadImageFile(kVisionDir + "/images/" + f.resized);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    ASSERT_EQ(want->height, f.out_h);
    ASSERT_EQ(want->width, f.out_w);
    auto got = ResizeBicubicAntialias(*src, static_cast<int>(f.out_h), static_cast<int>(f.out_w));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->pixels.size(), want->pixels.size());
    size_t differ = 0;
    int max_diff = 0;
    for (size_t i = 0; i < got->pixels.size(); ++i) {
      const int d = std::abs(int{got->pixels[i]} - int{want->pixels[i]});
      if (d != 0) ++differ;
      max_diff = std::max(max_diff, d);
    }
    EXPECT_EQ(differ, 0u) << differ << " of " << got->pixels.size()
                          << " bytes differ, max difference " << max_diff;
    if (differ == 0) ++exact;
  }
  EXPECT_EQ(exact, 10);
}

// The fuzz seeds cover the formats' corners: sizes after EXIF orientation and a few pixels
// whose value follows from PIL's conversion rules.
TEST(MediaTest, CorpusSeedsDecode) {
  if (!HaveImageCodecs()) GTEST_SKIP() << "built without image codecs";
  const std::string dir = std::string(GEMMA4_FIXTURES_DIR) + "/../../fuzz/corpus/image/";
  const struct {
    const char* file;
    int w, h;
  } seeds[] = {
      {"rgb_8x6.png", 8, 6},
      {"gray1_9x5.png", 9, 5},
      {"palette_trns_7x4.png", 7, 4},
      {"rgba_interlaced_9x9.png", 9, 9},
      {"rgb16_5x3.png", 5, 3},
      {"gray16_4x4.png", 4, 4},
      {"graya_6x3.png", 6, 3},
      {"exif8_6x4.png", 4, 6},
      {"rgb_16x8.jpg", 16, 8},
      {"gray_8x8.jpg", 8, 8},
      {"progressive_12x10.jpg", 12, 10},
      {"cmyk_adobe_8x8.jpg", 8, 8},
      {"exif6_10x6.jpg", 6, 10},
      {"lossy_8x8.webp", 8, 8},
      {"lossless_alpha_6x5.webp", 6, 5},
      {"lossy_alpha_7x7.webp", 7, 7},
  };
  for (const auto& s : seeds) {
    SCOPED_TRACE(s.file);
    auto img = LoadImageFile(dir + s.file);
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    EXPECT_EQ(img->width, s.w);
    EXPECT_EQ(img->height, s.h);
  }
  // 1-bit gray: 0 or 255 replicated.
  auto g1 = LoadImageFile(dir + "gray1_9x5.png");
  ASSERT_TRUE(g1.ok());
  for (size_t i = 0; i < g1->pixels.size(); i += 3) {
    EXPECT_TRUE(g1->pixels[i] == 0 || g1->pixels[i] == 255);
    EXPECT_EQ(g1->pixels[i], g1->pixels[i + 1]);
    EXPECT_EQ(g1->pixels[i], g1->pixels[i + 2]);
  }
  // 16-bit gray is PIL's "I;16", clipped to 255 by convert("RGB"): samples 0x0025, 0x4a6f.
  auto g16 = LoadImageFile(dir + "gray16_4x4.png");
  ASSERT_TRUE(g16.ok());
  EXPECT_EQ(g16->pixels[0], 0x25);
  EXPECT_EQ(g16->pixels[3], 255);
  // Palette with tRNS: palette colors, transparency ignored. Index 0 -> (255, 0, 0).
  auto pal = LoadImageFile(dir + "palette_trns_7x4.png");
  ASSERT_TRUE(pal.ok());
  EXPECT_EQ(pal->pixels[0], 255);
  EXPECT_EQ(pal->pixels[1], 0);
  EXPECT_EQ(pal->pixels[2], 0);
}

TEST(MediaTest, ResizeSameSizeCopies) {
  RgbImage img;
  img.width = 5;
  img.height = 3;
  for (int i = 0; i < 45; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 7));
  auto out = ResizeBicubicAntialias(img, 3, 5);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->pixels, img.pixels);
}

TEST(MediaTest, ResizeConstantImageStaysConstant) {
  // Weights sum to 2^P up to rounding, so a flat image must stay flat in every direction.
  RgbImage img;
  img.width = 37;
  img.height = 23;
  img.pixels.assign(37 * 23 * 3, 200);
  for (auto [h, w] : {std::pair{23, 5}, {7, 37}, {100, 300}, {1, 1}, {46, 11}}) {
    auto out = ResizeBicubicAntialias(img, h, w);
    ASSERT_TRUE(out.ok());
    for (uint8_t v : out->pixels) {
      ASSERT_NEAR(v, 200, 1) << h << "x" << w;
    }
  }
}

TEST(MediaTest, ResizeRejectsBadSizes) {
  RgbImage img;
  img.width = 4;
  img.height = 4;
  img.pixels.assign(48, 0);
  EXPECT_FALSE(ResizeBicubicAntialias(img, 0, 4).ok());
  EXPECT_FALSE(ResizeBicubicAntialias(img, 4, -1).ok());
  EXPECT_FALSE(ResizeBicubicAntialias(img, 100000, 4).ok());
  img.pixels.resize(47);
  EXPECT_FALSE(ResizeBicubicAntialias(img, 2, 2).ok());
}

TEST(MediaTest, ResizeLargePhotoIsFast) {
  RgbImage img;
  img.width = 4000;
  img.height = 3000;
  img.pixels.resize(size_t{4000} * 3000 * 3);
  uint32_t x = 12345;
  for (auto& p : img.pixels) {
    x = x * 1103515245u + 12345u;
    p = static_cast<uint8_t>(x >> 24);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto out = ResizeBicubicAntialias(img, 768, 768);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(out.ok());
  std::printf("4000x3000 -> 768x768: %.1f ms\n", ms);
}

TEST(MediaTest, TruncatedFilesFailCleanly) {
  if (!HaveImageCodecs()) GTEST_SKIP() << "built without image codecs";
  for (const char* name : {"down_1000x700.jpg", "exif6_240x160.jpg", "up_200x150.png",
                           "gray_333x251.png", "palette_123x77.png", "rgba_300x300.png"}) {
    SCOPED_TRACE(name);
    const std::string bytes = ReadOrDie(kVisionDir + "/images/" + name);
    ASSERT_GT(bytes.size(), 100u);
    for (size_t cut : {size_t{0}, size_t{1}, size_t{3}, size_t{8}, size_t{20}, size_t{33},
                       size_t{100}, bytes.size() / 4, bytes.size() / 2, bytes.size() * 3 / 4,
                       bytes.size() - 40, bytes.size() - 12, bytes.size() - 2, bytes.size() - 1}) {
      auto img = DecodeImage(std::string_view(bytes).substr(0, cut), "cut");
      if (cut < bytes.size() - 40) {
        EXPECT_FALSE(img.ok()) << "cut at " << cut;
      }
      if (!img.ok()) {
        EXPECT_FALSE(img.status().message().empty());
      } else {
        EXPECT_EQ(img->pixels.size(), size_t(img->width) * img->height * 3);
      }
    }
  }
}

TEST(MediaTest, RandomBytesFailCleanly) {
  uint64_t s = 88172645463325252ull;
  auto next = [&] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  const std::string prefixes[] = {"", "\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "RIFF\x10\0\0\0WEBP"};
  for (int round = 0; round < 200; ++round) {
    std::string bytes = prefixes[round % 4];
    const size_t n = next() % 600;
    for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<char>(next()));
    auto img = DecodeImage(bytes, "random");
    if (img.ok()) {
      EXPECT_EQ(img->pixels.size(), size_t(img->width) * img->height * 3);
    }
  }
}

uint32_t Crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}

void PutU32(std::string* s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s->push_back(static_cast<char>(v >> (8 * i)));
}

std::string PngHeader(uint32_t w, uint32_t h) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string chunk = "IHDR";
  PutU32(&chunk, w);
  PutU32(&chunk, h);
  chunk += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  PutU32(&png, 13);
  png += chunk;
  PutU32(&png, Crc32(chunk));
  // An empty IDAT: libpng reads the header chunks up to here before any pixel work.
  PutU32(&png, 0);
  png += "IDAT";
  PutU32(&png, Crc32("IDAT"));
  return png;
}

TEST(MediaTest, HugeAndEmptyHeadersAreRefused) {
  if (!HaveImageCodecs()) GTEST_SKIP() << "built without image codecs";
  for (auto [w, h] : {std::pair{100000u, 100000u}, {40000u, 10u}, {20000u, 20000u}}) {
    auto img = DecodeImage(PngHeader(w, h), "huge.png");
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument) << img.status().ToString();
    EXPECT_NE(img.status().message().find("over the limit"), std::string::npos);
  }
  auto zero = DecodeImage(PngHeader(0, 0), "zero.png");
  EXPECT_FALSE(zero.ok());
  // A JPEG whose frame header claims 60000x60000.
  std::string jpeg = ReadOrDie(kVisionDir + "/images/down_1000x700.jpg");
  size_t sof = std::string::npos;
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (static_cast<uint8_t>(jpeg[i]) == 0xff &&
        (static_cast<uint8_t>(jpeg[i + 1]) == 0xc0 || static_cast<uint8_t>(jpeg[i + 1]) == 0xc2)) {
      sof = i;
      break;
    }
  }
  ASSERT_NE(sof, std::string::npos);
  jpeg[sof + 5] = jpeg[sof + 7] = static_cast<char>(0xea);  // 0xea60 = 60000
  jpeg[sof + 6] = jpeg[sof + 8] = static_cast<char>(0x60);
  auto big = DecodeImage(jpeg, "huge.jpg");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument) << big.status().ToString();
}

TEST(MediaTest, UnknownFormatIsRefused) {
  for (const char* bytes : {"", "GIF89a.....", "BM......", "hello world"}) {
    auto img = DecodeImage(bytes, "x");
    ASSERT_FALSE(img.ok());
    EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(LoadImageFile("/nonexistent/x.png").status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(LoadImageFile(kVisionDir).ok());  // a directory
}

TEST(MediaTest, ImageFromPixels) {
  const uint8_t gray[] = {1, 2, 3, 99, 4, 5, 6, 99};  // 3x2, stride 4
  auto g = ImageFromPixels(gray, 3, 2, 1, 4);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->pixels,
            (std::vector<uint8_t>{1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6}));
  const uint8_t rgb[] = {1, 2, 3, 4, 5, 6};
  auto c = ImageFromPixels(rgb, 2, 1, 3, 6);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->pixels, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  const uint8_t rgba[] = {1, 2, 3, 0, 4, 5, 6, 255};
  auto a = ImageFromPixels(rgba, 2, 1, 4, 8);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->pixels, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_FALSE(ImageFromPixels(rgb, 2, 1, 5, 10).ok());
  EXPECT_FALSE(ImageFromPixels(rgb, 2, 1, 0, 6).ok());
  EXPECT_FALSE(ImageFromPixels(rgb, 2, 1, 3, 5).ok());  // stride too small
  EXPECT_FALSE(ImageFromPixels(rgb, 0, 1, 3, 6).ok());
  EXPECT_FALSE(ImageFromPixels(nullptr, 2, 1, 3, 6).ok());
}

}  // namespace
}  // namespace gemma4::media
