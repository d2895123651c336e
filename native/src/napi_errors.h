// One rule for turning the native layer's "E_CODE: text" strings into JS errors, shared by the
// trainer's surface (addon.cpp) and the merge's (merge_addon.cpp): the code goes to error.code,
// the text to error.message; a string without a code becomes E_NATIVE.
#pragma once
#include <napi.h>

#include <string>

inline Napi::Error ov_napi_error(Napi::Env env, const std::string & msg) {
    std::string code = "E_NATIVE", text = msg;
    const size_t colon = msg.find(": ");
    if (colon != std::string::npos && msg.compare(0, 2, "E_") == 0) {
        code = msg.substr(0, colon);
        text = msg.substr(colon + 2);
    }
    Napi::Error e = Napi::Error::New(env, text);
    e.Set("code", Napi::String::New(env, code));
    return e;
}
