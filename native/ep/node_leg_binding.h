// JS entry points of the network-leg kernels (node_leg.h): nodeLegFields,
// nodeLayout, nodePack, nodeUnpack, nodeReduce on the `cuda` object.
#pragma once

#include <napi.h>

namespace wideep::ep {

void RegisterNodeLeg(Napi::Env env, Napi::Object cuda);

}  // namespace wideep::ep
