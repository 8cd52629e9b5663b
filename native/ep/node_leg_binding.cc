#include "ep/node_leg_binding.h"

#include "common/args.h"
#include "common/baton.h"
#include "cuda/on_stream.h"
#include "ep/node_leg.h"
#include "ep/node_leg_fields.h"

namespace wideep::ep {
namespace {

// The last guard before a kernel indexes with these (TypeScript checked them first).
void Require(const Napi::CallbackInfo& info, bool ok, const char* what) {
  if (!ok) ThrowInvalidArg(info.Env(), what);
}

// Pack and unpack read the records' shape from their batons alike. A record
// holds its row, scales, ids and weights, and keeps 16-byte alignment.
template <class F, class Args>
void ReadRecordShape(const Napi::CallbackInfo& info, const Baton<F>& b, Args& a) {
  a.numRecords = b.Int(F::numRecords);
  a.rowBytes = b.Int(F::rowBytes);
  a.scalesPerRow = b.Int(F::scalesPerRow);
  a.topk = b.Int(F::topk);
  a.recordBytes = b.Int(F::recordBytes);
  Require(info, a.numRecords >= 0 && a.rowBytes > 0 && a.rowBytes % 16 == 0 && a.scalesPerRow >= 0 && a.topk >= 0 &&
                    a.recordBytes % 16 == 0 && a.recordBytes >= a.rowBytes + 4 * a.scalesPerRow + 8 * a.topk,
          "node leg: records must hold a 16-byte multiple row, its scales, ids and weights, in a 16-byte multiple");
}

Napi::Value Fields(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("layout", WIDEEP_FIELD_MAP(env, WIDEEP_NODE_LAYOUT_FIELDS));
  o.Set("pack", WIDEEP_FIELD_MAP(env, WIDEEP_NODE_PACK_FIELDS));
  o.Set("unpack", WIDEEP_FIELD_MAP(env, WIDEEP_NODE_UNPACK_FIELDS));
  o.Set("reduce", WIDEEP_FIELD_MAP(env, WIDEEP_NODE_REDUCE_FIELDS));
  return o;
}

void Layout(const Napi::CallbackInfo& info) {
  using F = NodeLayoutField;
  auto b = ReadBatonArg<F>(info, 0);
  NodeLayoutArgs a{};
  a.topkIdx = b.Ptr<const int32_t>(F::topkIdx);
  a.numTokens = b.Int(F::numTokens);
  a.topk = b.Int(F::topk);
  a.numExperts = b.Int(F::numExperts);
  a.numRanks = b.Int(F::numRanks);
  a.ranksPerNode = b.Int(F::ranksPerNode);
  a.isTokenInRank = b.Ptr<uint8_t>(F::isTokenInRank);
  a.numTokensPerRank = b.Ptr<int32_t>(F::numTokensPerRank);
  a.numTokensPerExpert = b.Ptr<int32_t>(F::numTokensPerExpert);
  a.isTokenInNode = b.Ptr<uint8_t>(F::isTokenInNode);
  a.numTokensPerNode = b.Ptr<int32_t>(F::numTokensPerNode);
  a.sendList = b.Ptr<int32_t>(F::sendList);
  a.posInNode = b.Ptr<int32_t>(F::posInNode);
  a.header = b.Ptr<int32_t>(F::header);
  a.badIds = b.Ptr<int32_t>(F::badIds);
  Require(info, a.numTokens >= 0 && a.topk >= 0 && a.numRanks > 0 && a.ranksPerNode > 0 && a.numRanks % a.ranksPerNode == 0 &&
                    a.numExperts > 0 && a.numExperts % a.numRanks == 0,
          "nodeLayout: ranks, nodes and experts must divide evenly");
  OnStream(info, 1, "nodeLayout", [&](cudaStream_t s) { return LaunchNodeLayout(a, s); });
}

void Pack(const Napi::CallbackInfo& info) {
  using F = NodePackField;
  auto b = ReadBatonArg<F>(info, 0);
  NodePackArgs a{};
  a.x = b.Ptr<const void>(F::x);
  a.xScales = b.Ptr<const float>(F::xScales);
  a.topkIdx = b.Ptr<const int32_t>(F::topkIdx);
  a.topkWeights = b.Ptr<const float>(F::topkWeights);
  a.list = b.Ptr<const int32_t>(F::list);
  a.out = b.Ptr<void>(F::out);
  ReadRecordShape(info, b, a);
  OnStream(info, 1, "nodePack", [&](cudaStream_t s) { return LaunchNodePack(a, s); });
}

void Unpack(const Napi::CallbackInfo& info) {
  using F = NodeUnpackField;
  auto b = ReadBatonArg<F>(info, 0);
  NodeUnpackArgs a{};
  a.records = b.Ptr<const void>(F::records);
  a.expertBegin = b.Int(F::expertBegin);
  a.expertEnd = b.Int(F::expertEnd);
  a.x = b.Ptr<void>(F::x);
  a.xScales = b.Ptr<float>(F::xScales);
  a.topkIdx = b.Ptr<int32_t>(F::topkIdx);
  a.topkWeights = b.Ptr<float>(F::topkWeights);
  ReadRecordShape(info, b, a);
  OnStream(info, 1, "nodeUnpack", [&](cudaStream_t s) { return LaunchNodeUnpack(a, s); });
}

void Reduce(const Napi::CallbackInfo& info) {
  using F = NodeReduceField;
  auto b = ReadBatonArg<F>(info, 0);
  NodeReduceArgs a{};
  a.rows = b.Ptr<const uint16_t>(F::rows);
  a.weights = b.Ptr<const float>(F::weights);
  a.posInNode = b.Ptr<const int32_t>(F::posInNode);
  a.numTokens = b.Int(F::numTokens);
  a.numNodes = b.Int(F::numNodes);
  a.hidden = b.Int(F::hidden);
  a.topk = b.Int(F::topk);
  a.bias0 = b.Ptr<const uint16_t>(F::bias0);
  a.bias1 = b.Ptr<const uint16_t>(F::bias1);
  a.out = b.Ptr<uint16_t>(F::out);
  a.outWeights = b.Ptr<float>(F::outWeights);
  Require(info, a.numTokens >= 0 && a.numNodes > 0 && a.hidden > 0 && a.hidden % 8 == 0 && a.topk >= 0 &&
                    (a.outWeights == nullptr || a.weights != nullptr),
          "nodeReduce: hidden must be a positive multiple of 8, and summed weights need weights");
  OnStream(info, 1, "nodeReduce", [&](cudaStream_t s) { return LaunchNodeReduce(a, s); });
}

}  // namespace

void RegisterNodeLeg(Napi::Env env, Napi::Object cuda) {
  cuda.Set("nodeLegFields", Napi::Function::New(env, Fields, "nodeLegFields"));
  cuda.Set("nodeLayout", Napi::Function::New(env, Layout, "nodeLayout"));
  cuda.Set("nodePack", Napi::Function::New(env, Pack, "nodePack"));
  cuda.Set("nodeUnpack", Napi::Function::New(env, Unpack, "nodeUnpack"));
  cuda.Set("nodeReduce", Napi::Function::New(env, Reduce, "nodeReduce"));
}

}  // namespace wideep::ep
