"""Data: the dataset loaders (:mod:`.datasets`), the manifests, fetching and verifying the files
(:mod:`.manifests`, :mod:`.download`, :mod:`.archives`, :mod:`.datastore`, :mod:`.datalock`),
image decoding (:mod:`.images`), atomic writes (:mod:`.storage`) and where things live on disk
(:mod:`.paths`).
"""
