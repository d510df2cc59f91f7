#!/usr/bin/env bash
# Builds video_fuzz statically against a minimal FFmpeg made from Debian's own source package
# (the version the library links), so the campaign can run on a machine without FFmpeg's 130
# shared libraries (fuzz/run_campaign.sh on the device). FFmpeg gets exactly the demuxers and
# decoders media::LoadVideoFrames allows (its container and codec allow-lists in
# src/media/video_file.cc) minus the external-library ones (libdav1d, libvpx, libaom), and is
# compiled with ASan and libFuzzer's coverage so the campaign sees into it.
#
#   fuzz/build_video_fuzzer.sh WORK_DIR      -> WORK_DIR/build/fuzz/video_fuzz
#
# Needs clang, zlib1g-dev and a deb-src line for bookworm (apt-get source).
set -euo pipefail
work="$(realpath -m "$1")"
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$work/src"
cd "$work/src"
version=$(dpkg-query -W -f='${Version}' libavcodec-dev)
ls ffmpeg_*.orig.tar.xz > /dev/null 2>&1 || apt-get source --download-only "ffmpeg=$version"
ls -d ffmpeg-*/ > /dev/null 2>&1 || tar xJf ffmpeg_*.orig.tar.xz
cd "$(ls -d ffmpeg-*/ | head -1)"
./configure --prefix="$work/ffmpeg" --cc=clang --cxx=clang++ --disable-everything \
  --enable-static --disable-shared --disable-programs --disable-doc --disable-x86asm \
  --disable-network --disable-autodetect --enable-zlib --disable-avdevice --disable-avfilter \
  --disable-postproc --enable-protocol=file \
  --enable-demuxer=mov,matroska,avi,mpegps,mpegts,flv,ogg \
  --enable-decoder=h264,hevc,vp8,vp9,mpeg4,msmpeg4v3,mpeg1video,mpeg2video,mjpeg,theora,h263,prores,ffv1,rawvideo \
  --enable-parser=h264,hevc,vp8,vp9,mpeg4video,mpegvideo,mjpeg,h263 \
  --extra-cflags="-fsanitize=address,fuzzer-no-link -gline-tables-only" \
  --extra-ldflags="-fsanitize=address"
make -j"$(nproc)"
make install
PKG_CONFIG_PATH="$work/ffmpeg/lib/pkgconfig" cmake -S "$repo" -B "$work/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DGEMMA4_BUILD_FUZZERS=ON -DGEMMA4_LINK_FFMPEG=ON -DCMAKE_EXE_LINKER_FLAGS="-L$work/ffmpeg/lib" \
  -DCMAKE_CXX_STANDARD_LIBRARIES="-lz -lm -latomic"
cmake --build "$work/build" --target video_fuzz
echo "video_fuzz: $work/build/fuzz/video_fuzz"
