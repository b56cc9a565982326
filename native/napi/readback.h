// Resolves a promise once a device fence has passed, without blocking the event loop: the wait runs on the
// libuv thread pool, and the host copy is handed to JS in OnOK.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <vector>

#include "core/device.h"

namespace bssn::napi {

class ReadbackWorker : public Napi::AsyncWorker {
 public:
  using Resolve = std::function<Napi::Value(Napi::Env, const std::vector<float>&)>;

  // `host` is the destination of the enqueued download (or empty for a plain fence); `keepAlive` holds the
  // JS objects the operation belongs to until it settles.
  static Napi::Promise start(Napi::Env env, std::shared_ptr<Fence> fence, std::shared_ptr<std::vector<float>> host,
                             Resolve resolve, std::vector<Napi::Value> keepAlive = {});

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;

 private:
  ReadbackWorker(Napi::Env env, std::shared_ptr<Fence> fence, std::shared_ptr<std::vector<float>> host, Resolve resolve);

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Fence> fence_;
  std::shared_ptr<std::vector<float>> host_;
  Resolve resolve_;
  std::vector<Napi::ObjectReference> keepAlive_;
};

}  // namespace bssn::napi
