// The cuDNN entry points bssn uses so far, declared here so the addon compiles without cuDNN headers. Checked
// against the real cudnn.h by test/gpu/check_declarations.cpp on a GPU host.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

// As cudnn.h names them, so the handle and descriptor types are the real ones.
struct cudnnContext;
struct cudnnTensorStruct;
struct cudnnFilterStruct;
struct cudnnConvolutionStruct;

namespace bssn::cudnn {

using Handle = cudnnContext*;
using Status = int;  // cudnnStatus_t
constexpr Status kSuccess = 0;  // CUDNN_STATUS_SUCCESS

using GetVersionFn = size_t (*)();                        // cudnnGetVersion
using GetErrorStringFn = const char* (*)(Status);         // cudnnGetErrorString
using CreateFn = Status (*)(Handle*);                     // cudnnCreate
using DestroyFn = Status (*)(Handle);                     // cudnnDestroy
using SetStreamFn = Status (*)(Handle, cudaStream_t);     // cudnnSetStream

using TensorDesc = cudnnTensorStruct*;
using FilterDesc = cudnnFilterStruct*;
using ConvDesc = cudnnConvolutionStruct*;
constexpr int kTensorNCHW = 0;        // CUDNN_TENSOR_NCHW
constexpr int kDataFloat = 0;         // CUDNN_DATA_FLOAT
constexpr int kCrossCorrelation = 1;  // CUDNN_CROSS_CORRELATION
constexpr int kDefaultMath = 0;       // CUDNN_DEFAULT_MATH: for float data, TF32 tensor cores allowed (Ampere on)
constexpr int kTensorOpMath = 1;      // CUDNN_TENSOR_OP_MATH: tensor cores allowed
constexpr int kFmaMath = 3;           // CUDNN_FMA_MATH: fp32 FMA only, never TF32 tensor cores
constexpr int kDeterministic = 1;     // CUDNN_DETERMINISTIC (cudnnDeterminism_t)

// cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionBwdDataAlgoPerf_t and cudnnConvolutionBwdFilterAlgoPerf_t
// share this layout (checked field by field against cudnn.h).
struct AlgoPerf {
  int algo;
  Status status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};

using CreateTensorDescFn = Status (*)(TensorDesc*);                                     // cudnnCreateTensorDescriptor
using SetTensor4dFn = Status (*)(TensorDesc, int format, int dataType, int n, int c, int h, int w);  // cudnnSetTensor4dDescriptor
using DestroyTensorDescFn = Status (*)(TensorDesc);                                     // cudnnDestroyTensorDescriptor
using CreateFilterDescFn = Status (*)(FilterDesc*);                                     // cudnnCreateFilterDescriptor
using SetFilter4dFn = Status (*)(FilterDesc, int dataType, int format, int k, int c, int h, int w);  // cudnnSetFilter4dDescriptor
using DestroyFilterDescFn = Status (*)(FilterDesc);                                     // cudnnDestroyFilterDescriptor
using CreateConvDescFn = Status (*)(ConvDesc*);                                         // cudnnCreateConvolutionDescriptor
using SetConv2dFn = Status (*)(ConvDesc, int padH, int padW, int strideH, int strideW, int dilationH, int dilationW, int mode,
                               int computeType);                                        // cudnnSetConvolution2dDescriptor
using SetConvMathTypeFn = Status (*)(ConvDesc, int);                                    // cudnnSetConvolutionMathType
using DestroyConvDescFn = Status (*)(ConvDesc);                                         // cudnnDestroyConvolutionDescriptor
using GetFwdAlgoFn = Status (*)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int, int*, AlgoPerf*);  // cudnnGetConvolutionForwardAlgorithm_v7
using GetFwdWorkspaceFn = Status (*)(Handle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int, size_t*);  // cudnnGetConvolutionForwardWorkspaceSize
using ConvFwdFn = Status (*)(Handle, const void*, TensorDesc, const void*, FilterDesc, const void*, ConvDesc, int, void*, size_t,
                             const void*, TensorDesc, void*);                           // cudnnConvolutionForward
using GetBwdDataAlgoFn = Status (*)(Handle, FilterDesc, TensorDesc, ConvDesc, TensorDesc, int, int*, AlgoPerf*);  // cudnnGetConvolutionBackwardDataAlgorithm_v7
using GetBwdDataWorkspaceFn = Status (*)(Handle, FilterDesc, TensorDesc, ConvDesc, TensorDesc, int, size_t*);  // cudnnGetConvolutionBackwardDataWorkspaceSize
using ConvBwdDataFn = Status (*)(Handle, const void*, FilterDesc, const void*, TensorDesc, const void*, ConvDesc, int, void*, size_t,
                                 const void*, TensorDesc, void*);                       // cudnnConvolutionBackwardData
using GetBwdFilterAlgoFn = Status (*)(Handle, TensorDesc, TensorDesc, ConvDesc, FilterDesc, int, int*, AlgoPerf*);  // cudnnGetConvolutionBackwardFilterAlgorithm_v7
using GetBwdFilterWorkspaceFn = Status (*)(Handle, TensorDesc, TensorDesc, ConvDesc, FilterDesc, int, size_t*);  // cudnnGetConvolutionBackwardFilterWorkspaceSize
using ConvBwdFilterFn = Status (*)(Handle, const void*, TensorDesc, const void*, TensorDesc, const void*, ConvDesc, int, void*, size_t,
                                   const void*, FilterDesc, void*);                     // cudnnConvolutionBackwardFilter

}  // namespace bssn::cudnn
