"""The node image and the component images loaded into it.

Component images (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kube-proxy,
CoreDNS, pause, metrics-server, local-path-provisioner, kube-router) are ``docker build`` s of
one binary on a local base, tagged with the names kubeadm and the manifests use
(``versions.image_tags()``). They are saved together (shared layers once) into
``node-image-<recipe>/images.tar``, which the node imports into containerd when it boots.

The node image is the ``node`` base (Debian 12 with systemd) plus containerd, runc, the CNI
plugins, kubelet, kubeadm, kubectl, crictl, the systemd units and the entrypoint in
``tests/harness/cluster/node/``. Every image carries the hash of its recipe as a label and is
rebuilt only when that changes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster import manifests
from tests.harness.cluster import versions as v
from tests.harness.cluster.bases import BASES, RECIPE_LABEL, ensure_base
from tests.harness.cluster.common import (
    ClusterError,
    Progress,
    cache_root,
    locked,
    recipe_hash,
    run_step,
)
from tests.harness.cluster.components import NodeBinaries, ensure_node_binaries
from tests.harness.cluster.engine import Engine
from tests.harness.kube.build import ensure_binaries as ensure_control_plane_binaries
from tests.harness.kube.build import kube_home

NODE_FILES = Path(__file__).parent / "node"
NODE_IMAGE = f"streampulse/node:{v.KUBERNETES}"
HELPER_IMAGE = BASES["debian"].tag
"""The image of local-path's helper pods (they need only ``sh``, ``mkdir`` and ``rm``)."""


@dataclass(frozen=True)
class _ImageRecipe:
    tag: str
    base: str  # a BASES name, or "scratch"
    files: dict[str, Path]  # path in the build context -> source
    dockerfile: str

    def digest(self) -> str:
        stats = {
            name: [src.stat().st_size, src.stat().st_mtime_ns] for name, src in self.files.items()
        }
        base_digest = BASES[self.base].digest() if self.base in BASES else self.base
        return recipe_hash(self.tag, self.dockerfile, stats, base_digest)


@dataclass(frozen=True)
class NodeImage:
    """The node image's tag and the archive of component images the node imports."""

    tag: str
    images_tar: Path
    image_tags: dict[str, str]


def _binary_image(tag: str, base: str, binary: Path, target: str, entrypoint: bool) -> _ImageRecipe:
    base_ref = "scratch" if base == "scratch" else BASES[base].tag
    lines = [f"FROM {base_ref}", f"COPY {binary.name} {target}"]
    if entrypoint:
        lines.append(f'ENTRYPOINT ["{target}"]')
    return _ImageRecipe(
        tag=tag, base=base, files={binary.name: binary}, dockerfile="\n".join(lines) + "\n"
    )


def component_recipes(node: NodeBinaries, control_plane_bin: Path) -> dict[str, _ImageRecipe]:
    tags = v.image_tags()
    kube_bin = node.dirs["kubernetes"]
    recipes = {
        name: _binary_image(
            tags[name], "debian", control_plane_bin / name, f"/usr/local/bin/{name}", False
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    recipes["etcd"] = _binary_image(
        tags["etcd"], "debian", control_plane_bin / "etcd", "/usr/local/bin/etcd", False
    )
    recipes["kube-proxy"] = _binary_image(
        tags["kube-proxy"], "net", kube_bin / "kube-proxy", "/usr/local/bin/kube-proxy", False
    )
    recipes["coredns"] = _binary_image(
        tags["coredns"], "debian", node.path("coredns", "coredns"), "/coredns", True
    )
    recipes["pause"] = _binary_image(
        tags["pause"], "scratch", node.path("pause", "pause"), "/pause", True
    )
    recipes["metrics-server"] = _binary_image(
        tags["metrics-server"],
        "debian",
        node.path("metrics-server", "metrics-server"),
        "/usr/local/bin/metrics-server",
        True,
    )
    recipes["local-path-provisioner"] = _binary_image(
        tags["local-path-provisioner"],
        "debian",
        node.path("local-path-provisioner", "local-path-provisioner"),
        "/usr/local/bin/local-path-provisioner",
        True,
    )
    recipes["kube-router"] = _binary_image(
        tags["kube-router"],
        "net",
        node.path("kube-router", "kube-router"),
        "/usr/local/bin/kube-router",
        True,
    )
    return recipes


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _build(
    engine: Engine, recipe: _ImageRecipe, context: Path, log: Path, say: Progress, label: str
) -> None:
    digest = recipe.digest()
    if engine.image_label(recipe.tag, RECIPE_LABEL) == digest:
        return
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    for name, src in recipe.files.items():
        if src.is_dir():
            shutil.copytree(src, context / name, symlinks=True)
        else:
            _link_or_copy(src, context / name)
    (context / "Dockerfile").write_text(recipe.dockerfile + f"LABEL {RECIPE_LABEL}={digest}\n")
    with say.step(f"docker build {recipe.tag}"):
        run_step(
            [engine.cli, "build", "--quiet", "-t", recipe.tag, str(context)],
            log=log,
            say=say,
            label=label,
            env=engine.env(),
        )
    shutil.rmtree(context)


def _node_recipe(node: NodeBinaries, staging: Path) -> _ImageRecipe:
    """The node image: its files are staged in ``staging`` (what the Dockerfile copies)."""
    net = manifests.Network()
    if staging.exists():
        shutil.rmtree(staging)
    layout: dict[str, Path] = {}
    kube = node.dirs["kubernetes"]
    containerd = node.dirs["containerd"]
    for name in ("kubelet", "kubeadm", "kubectl"):
        layout[f"usr/local/bin/{name}"] = kube / name
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        layout[f"usr/local/bin/{name}"] = containerd / name
    layout["usr/local/bin/crictl"] = node.path("cri-tools", "crictl")
    layout["usr/local/sbin/runc"] = node.path("runc", "runc")
    for name in ("bridge", "host-local", "loopback", "portmap", "ptp"):
        layout[f"opt/cni/bin/{name}"] = node.path("cni-plugins", name)
    layout["usr/local/bin/entrypoint"] = NODE_FILES / "entrypoint"
    for unit in ("containerd.service", "kubelet.service", "streampulse-images.service"):
        layout[f"etc/systemd/system/{unit}"] = NODE_FILES / unit
    generated = {
        "etc/containerd/config.toml": (NODE_FILES / "containerd-config.toml")
        .read_text()
        .replace("@PAUSE_IMAGE@", v.image_tags()["pause"]),
        "etc/cni/net.d/10-streampulse.conflist": manifests.cni_conflist(net),
        "etc/crictl.yaml": "runtime-endpoint: unix:///run/containerd/containerd.sock\n",
    }
    for rel, src in layout.items():
        _link_or_copy(src, staging / rel)
    for rel, text in generated.items():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    files = {"rootfs": staging}
    dockerfile = (
        f"FROM {BASES['node'].tag}\n"
        "COPY rootfs/ /\n"
        "RUN set -e; chmod 0755 /usr/local/bin/* /usr/local/sbin/runc /opt/cni/bin/*; "
        "systemctl enable containerd.service kubelet.service streampulse-images.service; "
        "mkdir -p /etc/kubernetes/manifests /var/lib/streampulse /streampulse\n"
        f"ENV container=docker STREAMPULSE_POD_SUBNET={net.pod_subnet} "
        f"STREAMPULSE_SERVICE_SUBNET={net.service_subnet}\n"
        "STOPSIGNAL SIGRTMIN+3\n"
        'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n'
    )
    return _ImageRecipe(tag=NODE_IMAGE, base="node", files=files, dockerfile=dockerfile)


def _node_digest(recipe: _ImageRecipe, staging: Path) -> str:
    """The node recipe's hash: its Dockerfile, its base, the small files' contents and the
    binaries' sizes and modification times (they change only when a component is rebuilt)."""
    stats: list[list[object]] = []
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            st = path.stat()
            rel = str(path.relative_to(staging))
            if st.st_size < 1_000_000:
                stats.append([rel, recipe_hash(path.read_bytes())])
            else:
                stats.append([rel, st.st_size, st.st_mtime_ns])
    return recipe_hash(recipe.dockerfile, BASES["node"].digest(), stats)


def ensure_node_image(
    engine: Engine, cache_dir: Path | None = None, say: Progress | None = None
) -> NodeImage:
    """Build whatever is missing or stale: bases, binaries, component images, node image."""
    say = say or Progress()
    root = cache_root(cache_dir)
    for name in ("debian", "net", "node"):
        ensure_base(engine, BASES[name], cache_dir, say)
    with (
        say.step("control-plane binaries (tests.harness.kube)"),
        say.heartbeat("control-plane build", kube_home(root) / "build.log"),
    ):
        control_plane = ensure_control_plane_binaries(root)
    node_bins = ensure_node_binaries(cache_dir, say)
    recipes = component_recipes(node_bins, control_plane.bin_dir)
    digests = {name: r.digest() for name, r in sorted(recipes.items())}
    images_home = root / f"node-image-{recipe_hash(digests, HELPER_IMAGE)}"
    images_home.mkdir(parents=True, exist_ok=True)
    log = images_home / "build.log"
    with locked(images_home / ".lock"):
        for name, recipe in recipes.items():
            _build(engine, recipe, images_home / "context" / name, log, say, f"image {name}")
        images_tar = images_home / "images.tar"
        if not images_tar.is_file():
            tags = [r.tag for r in recipes.values()] + [HELPER_IMAGE]
            partial = images_home / "images.tar.partial"
            with say.step(f"docker save {len(tags)} images for the node"):
                run_step(
                    [engine.cli, "save", "-o", str(partial), *tags],
                    log=log,
                    say=say,
                    label="docker save",
                    env=engine.env(),
                )
            partial.replace(images_tar)
        staging = images_home / "node-rootfs"
        node_recipe = _node_recipe(node_bins, staging)
        digest = _node_digest(node_recipe, staging)
        if engine.image_label(NODE_IMAGE, RECIPE_LABEL) != digest:
            context = images_home / "context" / "node"
            if context.exists():
                shutil.rmtree(context)
            context.mkdir(parents=True)
            shutil.move(str(staging), str(context / "rootfs"))
            (context / "Dockerfile").write_text(
                node_recipe.dockerfile + f"LABEL {RECIPE_LABEL}={digest}\n"
            )
            with say.step(f"docker build {NODE_IMAGE}"):
                run_step(
                    [engine.cli, "build", "--quiet", "-t", NODE_IMAGE, str(context)],
                    log=log,
                    say=say,
                    label="node image",
                    env=engine.env(),
                )
            shutil.rmtree(context)
        elif staging.exists():
            shutil.rmtree(staging)
    if not images_tar.is_file():
        raise ClusterError(f"{images_tar} is missing after the build")
    return NodeImage(tag=NODE_IMAGE, images_tar=images_tar, image_tags=v.image_tags())
