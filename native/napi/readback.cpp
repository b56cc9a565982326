#include "napi/readback.h"

#include <memory>

#include "core/error.h"
#include "napi/convert.h"
#include "napi/errors.h"

namespace bssn::napi {

ReadbackWorker::ReadbackWorker(Napi::Env env, std::shared_ptr<Fence> fence, Resolve resolve)
    : Napi::AsyncWorker(env, "bssn:readback"),
      deferred_(Napi::Promise::Deferred::New(env)),
      fence_(std::move(fence)),
      resolve_(std::move(resolve)) {}

Napi::Promise ReadbackWorker::start(Napi::Env env, std::shared_ptr<Fence> fence, Resolve resolve, std::vector<Napi::Value> keepAlive) {
  std::unique_ptr<ReadbackWorker> worker(new ReadbackWorker(env, std::move(fence), std::move(resolve)));
  for (Napi::Value v : keepAlive)
    if (v.IsObject()) worker->keepAlive_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  Napi::Promise promise = worker->deferred_.Promise();
  worker->Queue();
  worker.release();  // queued: it deletes itself after OnOK/OnError
  return promise;
}

Napi::Promise ReadbackWorker::floats(Napi::Env env, std::shared_ptr<Fence> fence, std::shared_ptr<std::vector<float>> host,
                                     Napi::Value owner) {
  return start(env, std::move(fence), [host](Napi::Env e) -> Napi::Value { return copyToJs(e, *host); }, {owner});
}

// A worker thread: no JS here. The failure is kept whole (kind, code, message); OnError makes the JS error.
void ReadbackWorker::Execute() {
  try {
    fence_->wait();
  } catch (...) {
    failure_.emplace(currentError());
    SetError(failure_->what());  // only so that OnError runs; the message travels in failure_
  }
}

void ReadbackWorker::OnOK() {
  Napi::Env env = Env();
  if (failure_) return OnError(Napi::Error());  // a failure with an empty message: SetError("") does not count
  try {
    deferred_.Resolve(resolve_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(toJsError(env, currentError()).Value());
  }
}

// The JS thread: the rejection carries the same class and code as the synchronous call's error would.
void ReadbackWorker::OnError(const Napi::Error& error) {
  deferred_.Reject(failure_ ? toJsError(Env(), *failure_).Value() : error.Value());
}

// When a worker thread's environment is torn down with a read still in flight, the work completes while JS can
// no longer run: settling the promise fails, and node-addon-api reports that by throwing from a C callback,
// which would abort the process. Nobody is left to tell, so the worker is just freed.
void ReadbackWorker::OnWorkComplete(Napi::Env env, napi_status status) {
  try {
    Napi::AsyncWorker::OnWorkComplete(env, status);  // settles the promise, then deletes this
  } catch (...) {
    Destroy();
  }
}

}  // namespace bssn::napi
