#!/usr/bin/env bash
# Multi-node DDP without SLURM: run this script once on every node, from the repository root.
#
#   # node 0 (its address must be reachable from node 1):
#   NODE_RANK=0 MASTER_ADDR=node0.example.org configs/cluster/torchrun.sh
#   # node 1:
#   NODE_RANK=1 MASTER_ADDR=node0.example.org configs/cluster/torchrun.sh
#
# torchrun starts --nproc-per-node processes per node and sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR /
# MASTER_PORT for each; Lightning detects them (TorchElasticEnvironment) and joins the process group instead of
# launching processes itself. --nnodes must equal trainer.num_nodes and --nproc-per-node trainer.devices.
# Extra arguments are passed to `lightning-snn fit`, e.g. --data.init_args.root /shared/datasets.
# NNODES, NPROC_PER_NODE and CONFIG may be set in the environment (tests/test_cluster.py runs 2 x 1 on loopback).
set -euo pipefail

NNODES=${NNODES:-2}
NPROC_PER_NODE=${NPROC_PER_NODE:-4}
CONFIG=${CONFIG:-configs/cluster/cifar10_resnet18_2x4gpu.yaml}
: "${NODE_RANK:?set NODE_RANK (0 on the first node, 1 on the second)}"
: "${MASTER_ADDR:?set MASTER_ADDR to the address of the node with NODE_RANK=0}"
MASTER_PORT=${MASTER_PORT:-29500}

exec uv run --frozen torchrun \
    --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE" \
    --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m lightning_snn.cli fit --config "$CONFIG" "$@"
