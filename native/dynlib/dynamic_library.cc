#include "dynlib/dynamic_library.h"

#include <dlfcn.h>
#include <link.h>

namespace wideep {
namespace {

std::string LastDlError() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}

std::string ResolvedPath(void* handle, const std::string& fallback) {
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0]) return map->l_name;
  return fallback;
}

}  // namespace

std::unique_ptr<DynamicLibrary> DynamicLibrary::OpenFirst(const std::vector<std::string>& candidates,
                                                          const char* probeSymbol,
                                                          std::vector<LoadAttempt>* attempts) {
  for (const std::string& c : candidates) {
    dlerror();
    // RTLD_LOCAL: keep the library's symbols from interposing on other code.
    void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      attempts->push_back({c, LastDlError()});
      continue;
    }
    if (!dlsym(h, probeSymbol)) {
      attempts->push_back({c, std::string("loaded, but has no symbol ") + probeSymbol});
      continue;
    }
    return std::unique_ptr<DynamicLibrary>(new DynamicLibrary(h, ResolvedPath(h, c)));
  }
  return nullptr;
}

void* DynamicLibrary::Symbol(const char* name, std::string* error) const {
  dlerror();
  void* s = dlsym(handle_, name);
  if (!s && error) *error = LastDlError();
  return s;
}

}  // namespace wideep
