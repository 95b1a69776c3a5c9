import grpc

# 导入生成的 gRPC 代码
import image_classifier_pb2
import image_classifier_pb2_grpc

# 创建 gRPC 通道
channel = grpc.insecure_channel('localhost:50051')

# 创建 gRPC 存根
stub = image_classifier_pb2_grpc.ImageClassifierStub(channel)

# 加载图像数据
with open("image.jpg", "rb") as f:
  image_data = f.read()

# 创建请求消息
image = image_classifier_pb2.Image(data=image_data)

# 调用 gRPC 方法
response = stub.ClassifyImage(image)

# 打印响应消息
print(response.label)
print(response.score)
