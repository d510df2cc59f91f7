// C trampolines that forward the C API's callbacks to exported Go functions; user_data
// carries a runtime/cgo.Handle.
#include <stdint.h>

#include "gemma4.h"
#include "_cgo_export.h"

static int on_text_bridge(gemma4_stream_kind kind, const char* text, size_t len, void* user) {
  return goOnText((int)kind, (char*)text, len, (uintptr_t)user);
}

static gemma4_status tool_bridge(const char* args, gemma4_tool_result* result, void* user) {
  return (gemma4_status)goTool((char*)args, result, (uintptr_t)user);
}

void gemma4go_set_on_text(gemma4_generate_options* o, uintptr_t handle) {
  o->on_text = on_text_bridge;
  o->user_data = (void*)handle;
}

gemma4_status gemma4go_register_tool(gemma4_tools* tools, const char* name,
                                     const char* description, const char* schema,
                                     uintptr_t handle) {
  return gemma4_tools_register(tools, name, description, schema, tool_bridge, (void*)handle);
}
