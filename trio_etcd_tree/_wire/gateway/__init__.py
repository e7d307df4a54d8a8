"""etcd's HTTP/JSON gateway: the codec (:mod:`.codec`) and the transport over httpx."""
