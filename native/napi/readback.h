// Resolves a promise once a device fence has passed, without blocking the event loop: the wait runs on the
// libuv thread pool, and `resolve` turns the host-side result (captured by it) into a JS value in OnOK. A failure
// rejects with the error a synchronous call would throw (class and `code`), made on the JS thread in OnError.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace bssn::napi {

class ReadbackWorker : public Napi::AsyncWorker {
 public:
  using Resolve = std::function<Napi::Value(Napi::Env)>;

  // `keepAlive` holds the JS objects the operation belongs to until it settles.
  static Napi::Promise start(Napi::Env env, std::shared_ptr<Fence> fence, Resolve resolve, std::vector<Napi::Value> keepAlive = {});

  // A promise of a Float32Array copied from `host` (the destination of the download behind `fence`).
  static Napi::Promise floats(Napi::Env env, std::shared_ptr<Fence> fence, std::shared_ptr<std::vector<float>> host,
                              Napi::Value owner);

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;
  void OnWorkComplete(Napi::Env env, napi_status status) override;

 private:
  ReadbackWorker(Napi::Env env, std::shared_ptr<Fence> fence, Resolve resolve);

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Fence> fence_;
  Resolve resolve_;
  std::optional<bssn::Error> failure_;  // set by Execute() on failure, turned into a JS error by OnError()
  std::vector<Napi::ObjectReference> keepAlive_;
};

}  // namespace bssn::napi
